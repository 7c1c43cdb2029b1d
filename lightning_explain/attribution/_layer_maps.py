"""What the layer methods share: the layer's activation and gradient as feature maps, token layers included."""

from __future__ import annotations

import math

from torch import Tensor

from lightning_explain.attribution.registry import MethodContext
from lightning_explain.core.layout import check_layout_options, detect_layout

LAYOUT_DEFAULTS = {"layout": None, "drop_tokens": None, "grid": None}
"""The layout options of the layer methods (Grad-CAM, Grad-CAM++, guided Grad-CAM). Left ``None``, the layer's
layout is detected (:func:`~lightning_explain.core.layout.detect_layout`): a feature map (N, C, H, W), a
channels-last one (N, H, W, C) (Swin), or a transformer's tokens (N, T, D) with the prefix tokens (CLS,
distillation, registers) dropped and the patch grid restored. ``layout`` ("nchw", "nhwc", "tokens"),
``drop_tokens`` (the leading non-patch tokens) and ``grid=(h, w)`` decide what detection cannot."""

TOKEN_DEFAULTS = LAYOUT_DEFAULTS
"""The earlier name of :data:`LAYOUT_DEFAULTS`."""


def tokens_to_grid(tokens: Tensor, grid: tuple[int, int] | None, drop_tokens: int) -> Tensor:
    """Token activations (N, T, D) -> a feature map (N, D, h, w), after dropping the first ``drop_tokens``.

    ``grid=None`` takes a square grid: the remaining token count must be a perfect square.
    """
    if tokens.ndim != 3:
        raise ValueError(
            f"token_grad_cam needs a layer whose output is tokens (N, T, D); got shape {tuple(tokens.shape)}."
        )
    tokens = tokens[:, drop_tokens:]
    count = tokens.shape[1]
    if grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(
                f"{count} tokens remain after dropping {drop_tokens}, which is not a square grid; pass grid=(h, w) "
                "or set drop_tokens to the number of non-patch tokens (CLS, registers)."
            )
        grid = (side, side)
    h, w = grid
    if h * w != count:
        raise ValueError(
            f"grid={tuple(grid)} holds {h * w} tokens, but the layer has {count} after dropping {drop_tokens}."
        )
    return tokens.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def check_token_options(drop_tokens: object = None, grid: object = None, layout: object = None) -> None:
    """Raise ``ValueError`` for a bad layout option (:func:`~lightning_explain.core.layout.check_layout_options`)."""
    check_layout_options(layout, drop_tokens, grid)


def layer_feature_maps(
    context: MethodContext,
    method: str,
    drop_tokens: int | None,
    grid: tuple[int, int] | None,
    layout: str | None = None,
) -> tuple[Tensor, Tensor]:
    """The layer's activation and its gradient (from the plain pass) as feature maps (N, C, h, w).

    The layout is detected from the layer's output unless the options decide it; it is kept on
    ``context.layout`` for the explanation. A layout that cannot be decided is an error naming the option.
    """
    activation, gradient = context.plain.activation, context.plain.activation_grad
    found = detect_layout(
        context.model,
        activation.shape,
        context.inputs.shape,
        module=context.layer,
        layout=layout,
        drop_tokens=drop_tokens,
        grid=grid,
        name=f"{method}: layer {context.layer_name!r}",
    )
    context.layout = found
    return found.feature_maps(activation), found.feature_maps(gradient)
