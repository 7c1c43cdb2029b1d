"""The one loss convention: ``loss_fn(logits, targets) -> per-sample losses (N,)``.

Every callback that takes a ``loss_fn`` (the probe gradients of
:class:`~lightning_explain.callbacks.GradientNormMonitor`, the probe losses of
:class:`~lightning_explain.callbacks.OverfitMonitor`) calls it the same way and expects one loss
per sample, as ``torch.nn.functional`` losses give with ``reduction="none"``. Where only a mean
is needed (gradient norms), a reduced 0-d loss is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(logits, targets) -> per-sample losses (N,)``, e.g. ``F.cross_entropy(..., reduction="none")``."""

PER_SAMPLE_HINT = (
    "For a torch loss pass reduction='none', "
    "e.g. loss_fn=lambda logits, y: F.cross_entropy(logits, y, reduction='none')."
)


def per_sample_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """The default loss: cross-entropy of each sample, (N,)."""
    return F.cross_entropy(logits, targets, reduction="none")


def per_sample_losses(loss_fn: LossFn | None, logits: Tensor, targets: Tensor) -> Tensor:
    """``loss_fn(logits, targets)`` (cross-entropy when ``None``), checked to be one loss per sample (N,).

    Raises:
        ValueError: the loss is not a tensor of shape (N,), naming ``reduction="none"``.

    Example:
        >>> per_sample_losses(None, torch.zeros(3, 2), torch.tensor([0, 1, 0])).shape
        torch.Size([3])
    """
    losses = (loss_fn or per_sample_cross_entropy)(logits, targets)
    n = logits.shape[0]
    if not isinstance(losses, Tensor) or losses.shape != (n,):
        raise ValueError(
            f"loss_fn must return one loss per sample, shape ({n},); got "
            f"{tuple(getattr(losses, 'shape', ()))}. {PER_SAMPLE_HINT}"
        )
    return losses


def mean_loss(loss_fn: LossFn | None, logits: Tensor, targets: Tensor) -> Tensor:
    """The mean of the per-sample losses; a loss that is already reduced (0-d) is taken as it is.

    Example:
        >>> mean_loss(F.mse_loss, torch.zeros(3, 1), torch.ones(3, 1)).item()  # a reduced loss is accepted
        1.0
    """
    loss = (loss_fn or per_sample_cross_entropy)(logits, targets)
    if isinstance(loss, Tensor) and loss.ndim == 0:
        return loss
    if not isinstance(loss, Tensor) or loss.shape != (logits.shape[0],):
        raise ValueError(
            f"loss_fn must return one loss per sample, shape ({logits.shape[0]},), or their mean (a 0-d tensor); "
            f"got {tuple(getattr(loss, 'shape', ()))}. {PER_SAMPLE_HINT}"
        )
    return loss.mean()
