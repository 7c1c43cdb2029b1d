"""Grad-CAM: gradient-weighted class activation maps (Selvaraju et al., 2017)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain.attribution._layer_maps import LAYOUT_DEFAULTS, check_token_options, layer_feature_maps
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def grad_cam_from_activation(activation: Tensor, activation_grad: Tensor, size: tuple[int, int]) -> Tensor:
    """``ReLU(sum_k mean_ij(dS/dA_k) * A_k)``, upsampled bilinearly to ``size``: (N, H, W), float32."""
    if activation.ndim != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with spatial output (N, C, H, W); the chosen layer returns shape "
            f"{tuple(activation.shape)}. Pick an earlier layer with layer=..."
        )
    activation, activation_grad = activation.float(), activation_grad.float()
    weights = activation_grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1, keepdim=True).relu()
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    return cam[:, 0]


def grad_cam_from_pass(
    context: MethodContext, layout: str | None, drop_tokens: int | None, grid: tuple[int, int] | None
) -> Tensor:
    """Grad-CAM from the plain pass's layer activation and gradient."""
    activation, gradient = layer_feature_maps(context, "grad_cam", drop_tokens, grid, layout)
    return grad_cam_from_activation(activation, gradient, context.size)


SPEC = register(
    MethodSpec(
        name="grad_cam",
        summary="the layer's channels weighted by their mean gradient, ReLU, upsampled (Selvaraju et al., 2017)",
        compute=grad_cam_from_pass,
        passes=frozenset({"plain"}),
        needs_layer=True,
        defaults=LAYOUT_DEFAULTS,
        check=check_token_options,
    )
)


def grad_cam(
    model: nn.Module, inputs: Tensor, target: TargetSpec = None, layer: LayerSpec = None, *, output: OutputSpec = None
) -> Tensor:
    """Grad-CAM heatmap at a layer's output, upsampled to the input size, not normalised.

    Equal to Captum's ``LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)``
    followed by ``F.interpolate(..., mode="bilinear", align_corners=False)``, also when an
    in-place op such as ``ReLU(inplace=True)`` follows the layer. Computed in eval mode; the
    model and ``inputs`` are left exactly as found.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch of images (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: a submodule, its dotted name, or ``None`` for the last spatial layer
            (see :func:`~lightning_explain.attribution.find_target_layer`).

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W) on the inputs' device.

    Example:
        >>> heat = grad_cam(model, images, layer="features.4")  # doctest: +SKIP
    """
    return explain_one("grad_cam", model, inputs, target, layer, output=output)
