"""Saliency: the magnitude of the input gradient (Simonyan et al., 2014)."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._targets import TargetSpec


def saliency_from_gradient(input_grad: Tensor) -> Tensor:
    """``max_c |dS/dx|`` over the channel dimension: (N, C, H, W) -> (N, H, W), in float32.

    A batch without a channel dimension, (N, F), gives ``|dS/dx|`` of the same shape.
    """
    magnitude = input_grad.float().abs()
    return magnitude.amax(dim=1) if magnitude.ndim >= 3 else magnitude


def saliency(model: nn.Module, inputs: Tensor, target: TargetSpec = None) -> Tensor:
    """Saliency map: the maximum over channels of ``|dS/dx|``, S the target's logit.

    Equal to Captum's ``Saliency(model).attribute(x, target=t, abs=True).amax(1)``.
    Computed in eval mode; the model and ``inputs`` are left exactly as found.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).

    Returns:
        A float32 tensor (N, H, W) on the inputs' device.

    Example:
        >>> maps = saliency(model, images, target=labels)  # doctest: +SKIP
        >>> maps.shape
        torch.Size([8, 32, 32])
    """
    from lightning_explain.attribution.explain import compute_explanation  # explain.py imports this module

    return compute_explanation(model, inputs, target, methods=("saliency",)).maps["saliency"]
