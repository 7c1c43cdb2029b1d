"""One shared way to pick the class each sample is explained for."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_explain.core.validation import is_int

TargetSpec = int | Tensor | None
"""``None`` = the predicted class; an ``int`` = that class for every sample; a ``LongTensor`` (N,)."""


def select_targets(logits: Tensor, target: TargetSpec) -> Tensor | None:
    """Return the class index per sample, shape (N,), or ``None`` for a single-output model.

    Raises ``ValueError`` naming the problem when ``target`` does not fit ``logits``.
    """
    if logits.ndim == 1:
        if target is None or (is_int(target) and target == 0):
            return None
        raise ValueError(
            f"The model returns one score per sample, so the only valid target is None (or 0); got {target!r}."
        )
    if logits.ndim != 2:
        raise ValueError(
            f"The model must return logits of shape (N, K) or scores (N,), got shape {tuple(logits.shape)}. "
            "Wrap the model so that forward returns one row of class scores per sample."
        )
    n, k = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if not (is_int(target) or isinstance(target, Tensor)):
        raise TypeError(
            f"target must be None (the predicted class), an int or a LongTensor of shape (N,), "
            f"got {type(target).__name__}."
        )
    if isinstance(target, int):
        if not 0 <= target < k:
            raise ValueError(f"target={target} is out of range: the model has {k} classes (0 to {k - 1}).")
        return torch.full((n,), target, dtype=torch.long, device=logits.device)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"A target tensor must hold integer class indices, got dtype {target.dtype}.")
    if target.ndim == 0:
        return select_targets(logits, int(target))
    if tuple(target.shape) != (n,):
        raise ValueError(f"A target tensor must have shape (N,) = ({n},), got {tuple(target.shape)}.")
    # A clone outside inference mode: a target made under torch.inference_mode() cannot index for backward.
    target = target.to(device=logits.device, dtype=torch.long).clone()
    if bool(((target < 0) | (target >= k)).any()):
        raise ValueError(f"target holds class indices outside 0 to {k - 1}: {target.tolist()}.")
    return target


def target_scores(logits: Tensor, target: TargetSpec) -> tuple[Tensor, Tensor | None]:
    """Return ``(S, targets)``: the sum over samples of each sample's target logit, and the targets.

    Samples are independent in eval mode, so the gradient of the sum gives each sample's
    own gradient.
    """
    targets = select_targets(logits, target)
    if targets is None:
        return logits.sum(), None
    return logits.gather(1, targets[:, None]).sum(), targets
