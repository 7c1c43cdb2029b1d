"""Channel reductions shared by the input-space methods: (N, C, H, W) attribution -> (N, H, W) map."""

from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("max_abs", "sum", "sum_abs")
"""``max_abs``: ``max_c |a|``, the reduction :func:`saliency` uses (the default); ``sum``: the signed
channel sum (keeps sign and totals, e.g. integrated gradients' completeness); ``sum_abs``: ``sum_c |a|``.
``reduce=None`` keeps the per-channel attribution."""

Reduce = str | None


def check_reduce(reduce: object) -> None:
    """Raise ``ValueError`` unless ``reduce`` is one of :data:`REDUCTIONS` or ``None``."""
    if reduce is not None and reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {list(REDUCTIONS)} or None (per-channel maps), got {reduce!r}.")


def reduce_channels(attribution: Tensor, reduce: Reduce) -> Tensor:
    """Reduce over dimension 1 of ``(N, C, ...)`` attribution, in float32.

    Inputs without a channel dimension, ``(N, F)``, are not reduced (``max_abs`` and ``sum_abs``
    still take the absolute value), exactly like :func:`saliency`.
    """
    check_reduce(reduce)
    attribution = attribution.float()
    if reduce is None:
        return attribution
    if reduce == "sum":
        return attribution.sum(dim=1) if attribution.ndim >= 3 else attribution
    magnitude = attribution.abs()
    if attribution.ndim < 3:
        return magnitude
    return magnitude.amax(dim=1) if reduce == "max_abs" else magnitude.sum(dim=1)
