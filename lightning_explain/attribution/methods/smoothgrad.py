"""SmoothGrad: the input gradient averaged over noisy copies of the input (Smilkov et al., 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_explain.attribution._multipass import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    copies_per_chunk,
    repeat_targets,
)
from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.gradients import gradient_pass
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec
from lightning_explain.core.validation import check_int, check_number


def noise_scale(inputs: Tensor, noise: float) -> Tensor:
    """The noise's standard deviation per sample: ``noise * (max - min)`` of that sample, shaped to broadcast."""
    flat = inputs.detach().flatten(1)
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    return (noise * spread).view(-1, *([1] * (inputs.ndim - 1)))


def check_noise_options(samples: object, noise: object, seed: object) -> None:
    """Raise ``ValueError`` unless ``samples`` is a positive int, ``noise`` a finite number >= 0, ``seed`` an int."""
    check_int("samples", samples, low=1, expected="a positive int (noisy copies per input)")
    check_number("noise", noise, low=0, finite=True, expected="a finite number >= 0 (a fraction of the input range)")
    check_int("seed", seed)


def smoothgrad(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    samples: int = 16,
    noise: float = 0.15,
    *,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reduce: Reduce = "max_abs",
    output: OutputSpec = None,
) -> Tensor:
    """SmoothGrad: the mean of ``dS/dx`` at ``samples`` noisy copies ``x + N(0, sigma^2)`` of each input.

    ``sigma = noise * (max(x) - min(x))`` per sample, the paper's noise level as a fraction of
    the input's value range. The mean is taken over the signed gradients, then reduced like
    :func:`saliency` (``max_c |.|``), so ``noise=0`` gives exactly ``saliency`` (then one pass is
    run, since every copy is the same). That is Captum's
    ``NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", abs=False, stdevs=sigma)``
    followed by ``.abs().amax(1)``. The noise comes from a private ``torch.Generator`` seeded
    with ``seed`` (the global RNG is not used, so training is not disturbed) and does not depend
    on ``chunk_size``; copies run ``chunk_size`` inputs per forward pass (whole copies of the
    batch, at least one).

    Args:
        model: a classifier returning logits (N, K).
        inputs: a floating-point batch (N, C, H, W) (or any (N, ...)).
        target: ``None`` = the class predicted for the clean ``inputs``, an ``int``, or a LongTensor (N,).
        samples: noisy copies per input.
        noise: the standard deviation as a fraction of each input's value range (0 = no noise).
        seed: seeds the noise.
        chunk_size: inputs per forward pass: bounds memory.
        reduce: ``"max_abs"`` (default), ``"sum"``, ``"sum_abs"``, or ``None`` for (N, C, H, W).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = smoothgrad(model, images, samples=32, noise=0.1)  # doctest: +SKIP
    """
    options = {"samples": samples, "noise": noise, "seed": seed, "chunk_size": chunk_size, "reduce": reduce}
    return explain_one("smoothgrad", model, inputs, target, options=options, output=output)


def smoothgrad_from_targets(
    context: MethodContext, samples: int, noise: float, seed: int, chunk_size: int, reduce: Reduce
) -> Tensor:
    """SmoothGrad for the targets the engine resolved: its own batched passes over the noisy copies."""
    model, inputs, target = context.model, context.inputs, context.target
    if noise == 0:
        samples = 1
    n = inputs.shape[0]
    per_chunk = copies_per_chunk(n, chunk_size)
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    with torch.inference_mode(False), torch.no_grad():
        x = inputs.detach().clone()
        sigma = noise_scale(x, float(noise))
        total = torch.zeros_like(x, dtype=torch.promote_types(x.dtype, torch.float32))
        for first in range(0, samples, per_chunk):
            copies = min(per_chunk, samples - first)
            # One draw per copy, in order: the noise does not depend on how copies are chunked.
            draws = [torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) for _ in range(copies)]
            noisy = (x + sigma * torch.stack(draws)).reshape(copies * n, *x.shape[1:])
            grad = gradient_pass(model, noisy, repeat_targets(target, copies)).input_grad
            total += grad.view(copies, *x.shape).sum(dim=0)
        attribution = total / samples
    return reduce_channels(attribution, reduce)


def _check_options(samples: object, noise: object, seed: object, chunk_size: object, reduce: object) -> None:
    check_reduce(reduce)
    check_chunk_size(chunk_size)
    check_noise_options(samples, noise, seed)


SPEC = register(
    MethodSpec(
        name="smoothgrad",
        summary="the input gradient averaged over noisy copies of the input (Smilkov et al., 2017)",
        compute=smoothgrad_from_targets,
        needs_float=True,
        defaults={"samples": 16, "noise": 0.15, "seed": 0, "chunk_size": DEFAULT_CHUNK_SIZE, "reduce": "max_abs"},
        check=_check_options,
    )
)
