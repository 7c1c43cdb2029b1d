"""What the layer methods share: the layer's activation and gradient as feature maps, token layers included."""

from __future__ import annotations

import math

from torch import Tensor

from lightning_explain.attribution.registry import MethodContext
from lightning_explain.core.validation import check_int, check_ints

TOKEN_DEFAULTS = {"drop_tokens": None, "grid": None}
"""The options of the Grad-CAM methods for a transformer's token layer: its (N, T, D) output loses the first
``drop_tokens`` tokens (1 = a CLS token; ``None`` = 0) and is reshaped to the patch grid ``grid=(h, w)``
(square when ``None``), as :func:`lightning_explain.attribution.token_grad_cam` does. Left unset, a token
layer is an error that says which option to set."""


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


def check_token_options(drop_tokens: object, grid: object) -> None:
    """Raise ``ValueError`` unless ``drop_tokens`` is ``None`` or an int >= 0 and ``grid`` ``None`` or a pair."""
    check_int("drop_tokens", drop_tokens, low=0, none_ok=True)
    if grid is not None and len(check_ints("grid", grid, low=1, expected="a pair (h, w) of positive ints")) != 2:
        raise ValueError(f"grid must be a pair (h, w) of positive ints or None, got {grid!r}.")


def layer_feature_maps(
    context: MethodContext, method: str, drop_tokens: int | None, grid: tuple[int, int] | None
) -> tuple[Tensor, Tensor]:
    """The layer's activation and its gradient (from the plain pass) as feature maps (N, C, h, w).

    A token layer (N, T, D) is read as a patch grid when ``drop_tokens`` or ``grid`` is set, else refused with a
    message naming the options.
    """
    activation, gradient = context.plain.activation, context.plain.activation_grad
    if activation.ndim == 3 and (drop_tokens is not None or grid is not None):
        drop = drop_tokens or 0
        return tokens_to_grid(activation, grid, drop), tokens_to_grid(gradient, grid, drop)
    if activation.ndim == 3:
        raise ValueError(
            f"{method}: the layer returns tokens {tuple(activation.shape)} (N, T, D), not feature maps. For a "
            f"transformer layer pass options {{'{method}': {{'drop_tokens': 1}}}} (1 = a CLS token; add "
            "'grid': (h, w) for a patch grid that is not square), or pick a convolutional layer."
        )
    return activation, gradient
