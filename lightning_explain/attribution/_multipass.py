"""Helpers for the methods that need many passes: targets fixed up front, batches in chunks."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_explain.core.targets import Target
from lightning_explain.core.validation import check_int, is_number

DEFAULT_CHUNK_SIZE = 64
"""Inputs per forward pass for integrated gradients, SmoothGrad and occlusion."""


def check_chunk_size(chunk_size: object) -> int:
    """Raise ``ValueError`` unless ``chunk_size`` is a positive int."""
    return check_int("chunk_size", chunk_size, low=1, expected="a positive int (inputs per forward pass)")


def copies_per_chunk(batch: int, chunk_size: int) -> int:
    """How many copies of a batch of ``batch`` inputs one forward pass takes: at least one."""
    return max(1, chunk_size // batch)


def repeat_targets(targets: Target | Tensor | None, copies: int) -> Target | Tensor | None:
    """Targets for ``copies`` stacked copies of the batch (copy-major): a resolved
    :class:`~lightning_explain.core.targets.Target`, a class-index tensor, or ``None`` for single-output models."""
    if isinstance(targets, Target):
        return targets.repeat(copies)
    return None if targets is None else targets.repeat(copies)


def target_outputs(logits: Tensor, targets: Target | Tensor | None) -> Tensor:
    """Each sample's target score, (N,)."""
    if isinstance(targets, Target):
        return targets.scores(logits)
    return logits.reshape(logits.shape[0]) if targets is None else logits.gather(1, targets[:, None])[:, 0]


def check_baseline(baseline: float | Tensor | None, inputs: Tensor) -> Tensor:
    """A baseline broadcastable to ``inputs``: ``None`` = zeros, a number, or a tensor (C, H, W) / (N, C, H, W)."""
    if baseline is None:
        baseline = 0.0
    if not (is_number(baseline) or isinstance(baseline, Tensor)):
        raise ValueError(
            f"baseline must be None, a number or a tensor broadcastable to the inputs, got {type(baseline).__name__}."
        )
    if not isinstance(baseline, Tensor):
        return torch.full((), float(baseline), dtype=inputs.dtype, device=inputs.device)
    try:
        shape = torch.broadcast_shapes(baseline.shape, inputs.shape)
    except RuntimeError:
        shape = None
    if shape != inputs.shape:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to the inputs' shape "
            f"{tuple(inputs.shape)}; pass one shaped like a sample {tuple(inputs.shape[1:])} or like the batch."
        )
    return baseline.detach().to(device=inputs.device, dtype=inputs.dtype)
