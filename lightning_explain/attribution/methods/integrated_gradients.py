"""Integrated gradients (Sundararajan et al., 2017), batched across steps."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from lightning_explain.attribution._multipass import (
    DEFAULT_CHUNK_SIZE,
    check_baseline,
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
from lightning_explain.core.validation import check_int

INTEGRATION_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
"""Quadrature rules along the path, with the same points and weights as Captum's ``method=`` choices."""


def integration_points(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """``(alphas, weights)`` in [0, 1] for ``steps`` points of a quadrature rule on the path."""
    check_int("steps", steps, low=2)
    if method not in INTEGRATION_RULES:
        raise ValueError(f"method must be one of {list(INTEGRATION_RULES)}, got {method!r}.")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()
    weights = [1 / steps] * steps
    if method == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return torch.linspace(0, 1, steps).tolist(), weights
    start, end = {"riemann_left": (0, 1 - 1 / steps), "riemann_right": (1 / steps, 1)}.get(
        method, (1 / (2 * steps), 1 - 1 / (2 * steps))
    )
    return torch.linspace(start, end, steps).tolist(), weights


def integrated_gradients(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    baseline: float | Tensor | None = None,
    steps: int = 32,
    *,
    method: str = "gausslegendre",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    reduce: Reduce = "max_abs",
    output: OutputSpec = None,
) -> Tensor:
    """Integrated gradients: ``(x - b) * integral_0^1 dS/dx(b + a (x - b)) da``, per input element.

    Equal to Captum's ``IntegratedGradients(model).attribute(x, baselines=b, target=t,
    n_steps=steps, method=method)``; the default rule is Captum's default, Gauss-Legendre.
    Completeness: the attribution (``reduce=None`` or ``"sum"``) sums to ``S(x) - S(b)`` up to the
    quadrature error. The ``steps`` scaled copies of the batch run ``chunk_size`` inputs per
    forward pass (rounded down to whole copies of the batch, at least one), one backward each.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a floating-point batch (N, C, H, W) (or any (N, ...)).
        target: ``None`` = the class predicted for ``inputs``, an ``int``, or a LongTensor (N,).
        baseline: ``None`` = zeros, a number, or a tensor shaped like a sample or like the batch.
        steps: quadrature points on the path from the baseline to the input (>= 2).
        method: one of :data:`INTEGRATION_RULES`.
        chunk_size: inputs per forward pass: bounds memory.
        reduce: ``"max_abs"`` (default, as :func:`saliency`), ``"sum"``, ``"sum_abs"``, or ``None``
            for the per-channel attribution (N, C, H, W).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = integrated_gradients(model, images, target=labels, steps=64)  # doctest: +SKIP
    """
    options = {"baseline": baseline, "steps": steps, "method": method, "chunk_size": chunk_size, "reduce": reduce}
    return explain_one("integrated_gradients", model, inputs, target, options=options, output=output)


def integrated_gradients_from_targets(
    context: MethodContext,
    baseline: float | Tensor | None,
    steps: int,
    method: str,
    chunk_size: int,
    reduce: Reduce,
) -> Tensor:
    """Integrated gradients for the targets the engine resolved: its own ``steps`` batched passes."""
    model, inputs, target = context.model, context.inputs, context.target
    alphas, weights = integration_points(steps, method)
    base = check_baseline(baseline, inputs)
    n = inputs.shape[0]
    per_chunk = copies_per_chunk(n, chunk_size)
    with torch.inference_mode(False), torch.no_grad():
        x = inputs.detach().clone()
        delta = x - base
        path_start = base.expand_as(x)
        accumulator = torch.zeros_like(x, dtype=torch.promote_types(x.dtype, torch.float32))
        for first in range(0, steps, per_chunk):
            alpha = x.new_tensor(alphas[first : first + per_chunk]).view(-1, *([1] * x.ndim))
            weight = accumulator.new_tensor(weights[first : first + per_chunk]).view(-1, *([1] * x.ndim))
            copies = alpha.shape[0]
            scaled = (path_start + alpha * delta).reshape(copies * n, *x.shape[1:])
            grad = gradient_pass(model, scaled, repeat_targets(target, copies)).input_grad
            accumulator += (weight * grad.view(copies, *x.shape)).sum(dim=0)
        attribution = delta * accumulator
    return reduce_channels(attribution, reduce)


def _check_options(baseline: object, steps: object, method: object, chunk_size: object, reduce: object) -> None:
    check_reduce(reduce)
    check_chunk_size(chunk_size)
    integration_points(steps, method)


SPEC = register(
    MethodSpec(
        name="integrated_gradients",
        summary="(x - baseline) times the input gradient integrated along the path (Sundararajan et al., 2017)",
        compute=integrated_gradients_from_targets,
        needs_float=True,
        defaults={
            "baseline": None,
            "steps": 32,
            "method": "gausslegendre",
            "chunk_size": DEFAULT_CHUNK_SIZE,
            "reduce": "max_abs",
        },
        check=_check_options,
    )
)
