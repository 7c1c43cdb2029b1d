"""Gradient × input: each input element times the target score's gradient (Shrikumar et al., 2016)."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def gradient_x_input_from_pass(context: MethodContext, reduce: Reduce) -> Tensor:
    """``reduce(x * dS/dx)`` from the plain pass's input gradient."""
    return reduce_channels(context.inputs.detach().float() * context.plain.input_grad.float(), reduce)


SPEC = register(
    MethodSpec(
        name="gradient_x_input",
        summary="the input times its gradient, x * dS/dx (Shrikumar et al., 2016)",
        compute=gradient_x_input_from_pass,
        passes=frozenset({"plain"}),
        input_grad=True,
        needs_float=True,
        defaults={"reduce": "max_abs"},
        check=check_reduce,
    )
)


def gradient_x_input(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    reduce: Reduce = "max_abs",
    *,
    output: OutputSpec = None,
) -> Tensor:
    """Gradient × input: ``x * dS/dx`` per input element, then reduced over channels like :func:`saliency`.

    Equal to Captum's ``InputXGradient(model).attribute(x, target=t)`` (``reduce=None``), and to
    ``.abs().amax(1)`` of it with the default ``reduce="max_abs"``. It reads the same forward and
    backward pass as ``saliency`` and ``grad_cam`` inside :func:`~lightning_explain.attribution.explain`:
    adding it to ``methods`` costs no extra pass.

    Args:
        model: a classifier returning logits (N, K) or scores (N,).
        inputs: a floating-point batch (N, C, H, W) (or any (N, ...)).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        reduce: ``"max_abs"`` (default), ``"sum"`` (the signed total per pixel), ``"sum_abs"``, or ``None``
            for the per-channel attribution (N, C, H, W).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = gradient_x_input(model, images, target=labels, reduce="sum")  # doctest: +SKIP
    """
    return explain_one("gradient_x_input", model, inputs, target, options={"reduce": reduce}, output=output)
