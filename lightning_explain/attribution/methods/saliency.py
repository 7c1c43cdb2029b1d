"""Saliency: the magnitude of the input gradient (Simonyan et al., 2014)."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def saliency_from_pass(context: MethodContext, reduce: Reduce) -> Tensor:
    """``reduce(dS/dx)`` from the plain pass's input gradient."""
    return reduce_channels(context.plain.input_grad, reduce)


SPEC = register(
    MethodSpec(
        name="saliency",
        summary="the magnitude of the input gradient |dS/dx| (Simonyan et al., 2014)",
        compute=saliency_from_pass,
        passes=frozenset({"plain"}),
        input_grad=True,
        needs_float=True,
        defaults={"reduce": "max_abs"},
        check=check_reduce,
    )
)


def saliency(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    reduce: Reduce = "max_abs",
    *,
    output: OutputSpec = None,
) -> Tensor:
    """Saliency map: the maximum over channels of ``|dS/dx|``, S the target's logit.

    Equal to Captum's ``Saliency(model).attribute(x, target=t, abs=True).amax(1)``.
    Computed in eval mode; the model and ``inputs`` are left exactly as found.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        reduce: the channel reduction, ``"max_abs"`` (the default, ``max_c |dS/dx|``), ``"sum"``,
            ``"sum_abs"``, or ``None`` for the signed per-channel gradient (N, C, H, W).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W) on the inputs' device ((N, C, H, W) with ``reduce=None``).

    Example:
        >>> maps = saliency(model, images, target=labels)  # doctest: +SKIP
        >>> maps.shape
        torch.Size([8, 32, 32])
    """
    return explain_one("saliency", model, inputs, target, options={"reduce": reduce}, output=output)
