"""Guided Backpropagation (Springenberg et al., 2015), without replacing the model's modules."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def guided_backprop_from_pass(context: MethodContext, reduce: Reduce) -> Tensor:
    """``reduce`` of the guided pass's input gradient."""
    return reduce_channels(context.guided.input_grad, reduce)


SPEC = register(
    MethodSpec(
        name="guided_backprop",
        summary="the input gradient with negative gradients stopped at every ReLU (Springenberg et al., 2015)",
        compute=guided_backprop_from_pass,
        passes=frozenset({"guided"}),
        needs_float=True,
        defaults={"reduce": "max_abs"},
        check=check_reduce,
    )
)


def guided_backprop(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    reduce: Reduce = "max_abs",
    *,
    output: OutputSpec = None,
) -> Tensor:
    """Guided Backpropagation: the input gradient with negative gradients stopped at every ReLU.

    Equal to Captum's ``GuidedBackprop(model).attribute(x, target=t)`` on models whose ReLUs
    are ``nn.ReLU`` modules (in-place or not), without replacing or changing the user's modules.
    Functional ReLUs (``F.relu``, ``torch.relu``, ``x.relu_()``) cannot be hooked: there the
    ordinary ReLU gradient is used, as in Captum; a warning is raised when the model has no
    ``nn.ReLU`` module at all. Runs its own forward and backward pass (the modified backward
    cannot be shared with the plain gradient methods).

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        reduce: ``"max_abs"`` (default, as :func:`saliency`), ``"sum"``, ``"sum_abs"``, or
            ``None`` for the per-channel attribution (N, C, H, W).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = guided_backprop(model, images, target=labels)  # doctest: +SKIP
    """
    return explain_one("guided_backprop", model, inputs, target, options={"reduce": reduce}, output=output)
