"""How a layer's output is laid out, so a layer method reads channels and space on the right axes.

Three layouts are known:

- ``"nchw"``: a convolutional feature map (N, C, H, W);
- ``"nhwc"``: a channels-last feature map (N, H, W, C), as Swin blocks and ConvNeXt's MLP see it;
- ``"tokens"``: a transformer's token sequence (N, T, D): ``prefix_tokens`` leading tokens that are not
  patches (CLS, distillation, register tokens), then the patches of a ``grid = (h, w)`` in row-major order.

:func:`detect_layout` decides from the output's shape, the inputs' shape, the module and the model (timm's
``num_prefix_tokens``); what it cannot decide is an error naming the option that decides it
(``layout=``, ``drop_tokens=``, ``grid=``). :meth:`LayerLayout.feature_maps` turns such an output into (N, C, h, w).

Example:
    >>> layout = detect_layout(vit, (8, 197, 192), (8, 3, 224, 224))  # doctest: +SKIP
    >>> layout.describe()  # doctest: +SKIP
    'tokens (N, 197, 192): 1 prefix token dropped, 14x14 patch grid'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from lightning_explain.core.validation import check_int, check_ints, is_int

LAYOUTS = ("nchw", "nhwc", "tokens")
"""The layouts a layer's output may have."""

MAX_INFERRED_PREFIX = 32
"""The most leading non-patch tokens inferred from a token count (more need ``drop_tokens=``)."""


@dataclass(frozen=True)
class LayerLayout:
    """A layer output's layout.

    Attributes:
        kind: one of :data:`LAYOUTS`.
        shape: the output's shape, batch included.
        prefix_tokens: for ``"tokens"``: how many leading tokens are not patches (dropped).
        grid: for ``"tokens"``: the patch grid ``(h, w)``.
    """

    kind: str
    shape: tuple[int, ...]
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None

    def feature_maps(self, output: Tensor) -> Tensor:
        """``output`` (laid out as described) as a feature map (N, C, h, w)."""
        if self.kind == "nchw":
            return output
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        h, w = self.grid
        tokens = output[:, self.prefix_tokens :]
        return tokens.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    def describe(self) -> str:
        """One line for logs: the layout, and for tokens the prefix dropped and the grid."""
        dims = ", ".join(str(d) for d in self.shape[1:])
        if self.kind == "nchw":
            return f"feature map (N, C, H, W) = (N, {dims})"
        if self.kind == "nhwc":
            return f"channels-last feature map (N, H, W, C) = (N, {dims}), read as NHWC"
        plural = "" if self.prefix_tokens == 1 else "s"
        h, w = self.grid
        return f"tokens (N, T, D) = (N, {dims}): {self.prefix_tokens} prefix token{plural} dropped, {h}x{w} patch grid"

    def as_dict(self) -> dict:
        """The layout as plain values (for logs and checkpoints)."""
        return {
            "kind": self.kind,
            "prefix_tokens": self.prefix_tokens,
            "grid": None if self.grid is None else list(self.grid),
        }


def check_layout_options(layout: object = None, drop_tokens: object = None, grid: object = None) -> None:
    """Raise ``ValueError`` unless ``layout`` is ``None`` or one of :data:`LAYOUTS`, ``drop_tokens`` ``None`` or an
    int >= 0 and ``grid`` ``None`` or a pair of positive ints."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be None (detected) or one of {list(LAYOUTS)}, got {layout!r}.")
    check_int("drop_tokens", drop_tokens, low=0, none_ok=True)
    if grid is not None and len(check_ints("grid", grid, low=1, expected="a pair (h, w) of positive ints")) != 2:
        raise ValueError(f"grid must be a pair (h, w) of positive ints or None, got {grid!r}.")


def detect_layout(
    model: nn.Module | None,
    shape: Sequence[int],
    input_shape: Sequence[int],
    *,
    module: nn.Module | None = None,
    layout: str | None = None,
    drop_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
    name: str = "the layer",
) -> LayerLayout:
    """The layout of a layer output of ``shape`` for inputs of ``input_shape``; the options override detection.

    - 4-D: ``"nchw"`` unless only the channels-last reading gives a spatial grid matching the input's aspect, or
      both do and ``module`` is a ``LayerNorm`` over the last dimension; ``drop_tokens`` / ``grid`` imply tokens.
    - 3-D: tokens. ``prefix_tokens`` = ``drop_tokens``, else the model's ``num_prefix_tokens`` (timm), else the
      fewest leading tokens whose removal leaves a grid with the input's aspect ratio; ``grid`` else that grid.

    Raises:
        ValueError: a shape with no spatial reading, or tokens whose grid cannot be decided; the message names
            the option to set.
    """
    check_layout_options(layout, drop_tokens, grid)
    shape = tuple(int(d) for d in shape)
    size = tuple(int(d) for d in input_shape[2:]) if len(input_shape) == 4 else None
    if layout is None:
        if len(shape) == 3 or (drop_tokens is not None or grid is not None):
            layout = "tokens"
        elif len(shape) == 4:
            layout = _spatial_layout(shape, size, module)
    if layout in ("nchw", "nhwc"):
        if len(shape) != 4:
            raise ValueError(
                f"{name} returns shape {shape}, which is not a 4-D feature map for layout={layout!r}; pick another "
                "layer with layer=, or set layout='tokens' (with drop_tokens=) for a token sequence (N, T, D)."
            )
        return LayerLayout(layout, shape)
    if layout != "tokens" or len(shape) != 3:
        raise ValueError(
            f"{name} returns shape {shape}: neither a feature map (N, C, H, W) / (N, H, W, C) nor tokens (N, T, D). "
            "Pick a layer with spatial output with layer=."
        )
    return _token_layout(model, shape, size, drop_tokens, grid, name)


def _grid_like(h: int, w: int, size: tuple[int, int] | None) -> bool:
    """Whether an (h, w) grid could tile an input of ``size``: within it, and about the same stride on both axes."""
    if h * w <= 1:
        return False
    if size is None:
        return True
    if h > size[0] or w > size[1]:
        return False
    stride_h, stride_w = size[0] / h, size[1] / w
    return abs(stride_h - stride_w) <= 0.25 * max(stride_h, stride_w)


def _spatial_layout(shape: tuple[int, ...], size: tuple[int, int] | None, module: nn.Module | None) -> str:
    channels_first = _grid_like(shape[2], shape[3], size)
    channels_last = _grid_like(shape[1], shape[2], size)
    last_dim_norm = (
        isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == (shape[3],) and shape[1] != shape[3]
    )
    if channels_last and (last_dim_norm or not channels_first):
        return "nhwc"
    return "nchw"


def spatial_cells(shape: Sequence[int], input_shape: Sequence[int], module: nn.Module | None = None) -> int:
    """How many spatial cells a 4-D output of ``shape`` has in its detected layout (1 = no spatial extent)."""
    shape = tuple(shape)
    size = tuple(input_shape[2:]) if len(input_shape) == 4 else None
    if _spatial_layout(shape, size, module) == "nhwc":
        return shape[1] * shape[2]
    return shape[2] * shape[3]


def _token_layout(
    model: nn.Module | None,
    shape: tuple[int, ...],
    size: tuple[int, int] | None,
    drop_tokens: int | None,
    grid: tuple[int, int] | None,
    name: str,
) -> LayerLayout:
    count = shape[1]
    hint = (
        "Set the method option 'drop_tokens' (the leading non-patch tokens: 1 for a CLS token) and, for a grid "
        "that is not square, 'grid': (h, w); e.g. method_options={'grad_cam': {'drop_tokens': 1, 'grid': (h, w)}}."
    )
    if grid is not None:
        grid = (int(grid[0]), int(grid[1]))
        prefix = count - grid[0] * grid[1] if drop_tokens is None else drop_tokens
        if prefix < 0 or prefix + grid[0] * grid[1] != count:
            raise ValueError(
                f"{name} has {count} tokens; grid={grid} holds {grid[0] * grid[1]} patches, which does not fit "
                f"after dropping {prefix} leading tokens. {hint}"
            )
        return LayerLayout("tokens", shape, prefix, grid)
    prefixes = [drop_tokens] if drop_tokens is not None else _prefix_candidates(model, count)
    for prefix in prefixes:
        found = _patch_grid(count - prefix, size)
        if found is not None:
            return LayerLayout("tokens", shape, prefix, found)
    given = f"after dropping {drop_tokens} leading tokens " if drop_tokens is not None else ""
    raise ValueError(
        f"{name} returns tokens {shape} (N, T, D), and the patch grid cannot be decided: {count} tokens {given}"
        f"form no grid with the input's aspect ratio {size}. {hint}"
    )


def _prefix_candidates(model: nn.Module | None, count: int) -> list[int]:
    declared = model_prefix_tokens(model)
    if declared is not None:
        return [declared]
    return list(range(min(count, MAX_INFERRED_PREFIX + 1)))


def model_prefix_tokens(model: nn.Module | None) -> int | None:
    """The ``num_prefix_tokens`` a model (or exactly one distinct value among its submodules) declares, as timm does."""
    if model is None:
        return None
    values = {
        value
        for module in model.modules()
        if is_int(value := getattr(module, "num_prefix_tokens", None)) and value >= 0
    }
    return values.pop() if len(values) == 1 else None


def _patch_grid(patches: int, size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (h, w) grid of ``patches`` cells with the input's aspect ratio (square patches), or ``None``."""
    if patches < 1:
        return None
    if size is None:
        side = round(patches**0.5)
        return (side, side) if side * side == patches else None
    height, width = size
    for h in range(1, patches + 1):
        if patches % h == 0 and h * width == (patches // h) * height:
            return h, patches // h
    return None
