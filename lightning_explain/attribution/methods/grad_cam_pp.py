"""Grad-CAM++: Grad-CAM with per-location weights (Chattopadhyay et al., 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain.attribution._layer_maps import LAYOUT_DEFAULTS, check_token_options, layer_feature_maps
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec

EPS = 1e-6
"""Added to the denominator of ``alpha``, as pytorch-grad-cam's ``GradCAMPlusPlus`` does."""


def grad_cam_pp_from_activation(activation: Tensor, activation_grad: Tensor, size: tuple[int, int]) -> Tensor:
    """Grad-CAM++ from a layer's output ``A`` and ``g = dS/dA``: (N, H, W) float32, upsampled bilinearly.

    The paper's closed form (its eq. 19, with the higher derivatives of ``exp(S)`` written as
    powers of ``g``)::

        alpha = g^2 / (2 g^2 + sum_ab(A) g^3 + eps)    (0 where g == 0)
        w_k   = sum_ij alpha_kij * relu(g_kij)
        map   = relu(sum_k w_k A_k)
    """
    if activation.ndim != 4:
        raise ValueError(
            f"Grad-CAM++ needs a layer with spatial output (N, C, H, W); the chosen layer returns shape "
            f"{tuple(activation.shape)}. Pick an earlier layer with layer=..."
        )
    activation, grad = activation.float(), activation_grad.float()
    grad_2 = grad * grad
    total = activation.sum(dim=(2, 3), keepdim=True)
    alpha = grad_2 / (2 * grad_2 + total * grad_2 * grad + EPS)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grad.relu()).sum(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1, keepdim=True).relu()
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]


def grad_cam_pp_from_pass(
    context: MethodContext, layout: str | None, drop_tokens: int | None, grid: tuple[int, int] | None
) -> Tensor:
    """Grad-CAM++ from the plain pass's layer activation and gradient."""
    activation, gradient = layer_feature_maps(context, "grad_cam_pp", drop_tokens, grid, layout)
    return grad_cam_pp_from_activation(activation, gradient, context.size)


SPEC = register(
    MethodSpec(
        name="grad_cam_pp",
        summary="Grad-CAM with per-location weights from higher-order gradients (Chattopadhyay et al., 2018)",
        compute=grad_cam_pp_from_pass,
        passes=frozenset({"plain"}),
        needs_layer=True,
        defaults=LAYOUT_DEFAULTS,
        check=check_token_options,
    )
)


def grad_cam_pp(
    model: nn.Module, inputs: Tensor, target: TargetSpec = None, layer: LayerSpec = None, *, output: OutputSpec = None
) -> Tensor:
    """Grad-CAM++ heatmap at a layer's output, upsampled to the input size, not normalised.

    After per-image min-max normalisation it agrees with pytorch-grad-cam's ``GradCAMPlusPlus``
    (same formula, same ``eps``, gradients of the raw target logit, not of ``exp(S)``), up to
    the upsampling: here the bilinear one of :func:`grad_cam` (``align_corners=False``) before
    normalising, there OpenCV's bilinear resize after it. Shares one forward and one backward
    pass with ``saliency`` and ``grad_cam`` inside :func:`~lightning_explain.attribution.explain`.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch of images (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: a submodule, its dotted name, or ``None`` for the last spatial layer.

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W) on the inputs' device.

    Example:
        >>> heat = grad_cam_pp(model, images, layer="features")  # doctest: +SKIP
    """
    return explain_one("grad_cam_pp", model, inputs, target, layer, output=output)
