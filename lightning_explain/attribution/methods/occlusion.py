"""Occlusion (Zeiler and Fergus, 2014): how much the target score drops when a window is covered."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_explain.attribution._multipass import (
    DEFAULT_CHUNK_SIZE,
    check_baseline,
    check_chunk_size,
    copies_per_chunk,
    repeat_targets,
    target_outputs,
)
from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec
from lightning_explain.core.validation import is_int


def check_window(window: object, stride: object) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(window, stride)`` as (height, width) pairs; the stride defaults to half the window.

    Raises ``ValueError`` for values that are not positive ints or pairs of them, or a stride
    larger than the window (some pixels would never be occluded).
    """
    window = _pair("window", window)
    stride = _pair("stride", stride if stride is not None else (max(1, window[0] // 2), max(1, window[1] // 2)))
    if stride[0] > window[0] or stride[1] > window[1]:
        raise ValueError(f"stride={stride} must not exceed window={window}, or some pixels are never occluded.")
    return window, stride


def _pair(name: str, value: object) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(is_int(v) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width) of them, got {value!r}.")
    return int(pair[0]), int(pair[1])


def window_positions(size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the windows: every ``stride`` pixels, plus one more where the edge is not reached.

    The last window in a dimension may stick out of the image and is cut there, as in Captum.
    """
    starts = [
        [i * s for i in range(math.ceil((extent - w) / s) + 1)]
        for extent, w, s in zip(size, window, stride, strict=True)
    ]
    return [(row, col) for row in starts[0] for col in starts[1]]


def occlusion(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    window: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] | None = None,
    baseline: float | Tensor = 0.0,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reduce: Reduce = "max_abs",
    output: OutputSpec = None,
) -> Tensor:
    """Occlusion: per pixel, the mean of ``S(x) - S(x with a window set to baseline)`` over the windows covering it.

    Forward passes only (under ``torch.no_grad()``), the occluded copies batched ``chunk_size``
    inputs per pass (whole copies of the batch, at least one). Windows cover all channels and
    slide over height and width; equal to Captum's ``Occlusion(model).attribute(x, target=t,
    sliding_window_shapes=(C, *window), strides=(C, *stride), baselines=baseline)``.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a floating-point batch of images (N, C, H, W).
        target: ``None`` = the class predicted for ``inputs``, an ``int``, or a LongTensor (N,).
        window: the window's side, or ``(height, width)``; at most the image size.
        stride: the step between windows, at most the window; ``None`` = half the window.
        baseline: the value an occluded pixel takes: a number or a tensor broadcastable to the inputs.
        chunk_size: inputs per forward pass: bounds memory.
        reduce: ``"max_abs"`` (default), ``"sum"``, ``"sum_abs"``, or ``None`` for (N, C, H, W)
            (the same value in every channel: a window covers them all).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = occlusion(model, images, window=4, stride=2)  # doctest: +SKIP
    """
    options = {"window": window, "stride": stride, "baseline": baseline, "chunk_size": chunk_size, "reduce": reduce}
    return explain_one("occlusion", model, inputs, target, options=options, output=output)


def occlusion_from_targets(
    context: MethodContext,
    window: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    baseline: float | Tensor,
    chunk_size: int,
    reduce: Reduce,
) -> Tensor:
    """Occlusion for the targets the engine resolved, against the clean scores of its logits: forward passes only."""
    model, inputs, target, logits = context.model, context.inputs, context.target, context.logits
    size = (inputs.shape[2], inputs.shape[3])
    window, stride = check_window(window, stride)
    if window[0] > size[0] or window[1] > size[1]:
        raise ValueError(f"window={window} is larger than the images {size}; pass a smaller window=.")
    base = check_baseline(baseline, inputs)
    positions = window_positions(size, window, stride)
    n = inputs.shape[0]
    per_chunk = copies_per_chunk(n, chunk_size)
    with explanation_mode(model, inputs.device), torch.no_grad():
        x = inputs.detach().clone()
        clean = target_outputs(logits, target).to(torch.promote_types(x.dtype, torch.float32))
        total = torch.zeros((n, 1, *size), dtype=clean.dtype, device=x.device)
        count = torch.zeros((1, 1, *size), dtype=clean.dtype, device=x.device)
        for first in range(0, len(positions), per_chunk):
            chunk = positions[first : first + per_chunk]
            mask = x.new_zeros((len(chunk), 1, 1, *size))
            for j, (row, col) in enumerate(chunk):
                mask[j, ..., row : row + window[0], col : col + window[1]] = 1
            occluded = (x * (1 - mask) + base * mask).reshape(len(chunk) * n, *x.shape[1:])
            scores = target_outputs(target.select(model(occluded)), repeat_targets(target, len(chunk)))
            drop = (clean.repeat(len(chunk)) - scores).view(len(chunk), n, 1, 1, 1)
            total += (drop * mask).sum(dim=0)
            count += mask.sum(dim=0)
        attribution = (total / count).expand(-1, x.shape[1], -1, -1)
    return reduce_channels(attribution, reduce)


def _check_options(window: object, stride: object, baseline: object, chunk_size: object, reduce: object) -> None:
    check_reduce(reduce)
    check_chunk_size(chunk_size)
    check_window(window, stride)


SPEC = register(
    MethodSpec(
        name="occlusion",
        summary="how much the target score drops when a window over the image is covered (Zeiler and Fergus, 2014)",
        compute=occlusion_from_targets,
        needs_float=True,
        needs_images=True,
        images_reason="slides a window over images",
        defaults={"window": 8, "stride": None, "baseline": 0.0, "chunk_size": DEFAULT_CHUNK_SIZE, "reduce": "max_abs"},
        check=_check_options,
    )
)
