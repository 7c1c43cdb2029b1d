"""Guided Grad-CAM: Guided Backprop times the upsampled Grad-CAM map (Selvaraju et al., 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._reduce import Reduce, reduce_channels
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.targets import TargetSpec


def guided_grad_cam_from(guided_grad: Tensor, cam: Tensor, reduce: Reduce) -> Tensor:
    """``reduce(guided_grad * cam)``: guided gradient (N, C, H, W) times a Grad-CAM map (N, H, W)."""
    return reduce_channels(guided_grad.float() * cam[:, None], reduce)


def guided_grad_cam(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    reduce: Reduce = "max_abs",
) -> Tensor:
    """Guided Grad-CAM: :func:`guided_backprop` times :func:`grad_cam`, per channel, then reduced.

    The Grad-CAM factor is the map :func:`grad_cam` returns (ReLU, bilinear upsampling), so the
    result equals Captum's ``GuidedBackprop`` attribution times ``LayerGradCam`` upsampled the
    same way. Two passes: the guided one, and the plain one Grad-CAM needs (the guided backward
    changes ``dS/dA`` at any layer with a ReLU above it, so it cannot give Grad-CAM's weights).

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch of images (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: Grad-CAM's layer: a submodule, its dotted name, or ``None`` (automatic).
        reduce: ``"max_abs"`` (default), ``"sum"``, ``"sum_abs"``, or ``None`` for (N, C, H, W).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = guided_grad_cam(model, images, layer="features")  # doctest: +SKIP
    """
    from lightning_explain.attribution.explain import compute_explanation  # explain.py imports this module

    options = {"guided_grad_cam": {"reduce": reduce}}
    return compute_explanation(model, inputs, target, layer, methods=("guided_grad_cam",), options=options).maps[
        "guided_grad_cam"
    ]
