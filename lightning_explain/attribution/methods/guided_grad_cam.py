"""Guided Grad-CAM: Guided Backprop times the upsampled Grad-CAM map (Selvaraju et al., 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._layer_maps import LAYOUT_DEFAULTS, check_token_options, layer_feature_maps
from lightning_explain.attribution._reduce import Reduce, check_reduce, reduce_channels
from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.methods.grad_cam import grad_cam_from_activation
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def guided_grad_cam_from(guided_grad: Tensor, cam: Tensor, reduce: Reduce) -> Tensor:
    """``reduce(guided_grad * cam)``: guided gradient (N, C, H, W) times a Grad-CAM map (N, H, W)."""
    return reduce_channels(guided_grad.float() * cam[:, None], reduce)


def guided_grad_cam_from_pass(
    context: MethodContext,
    reduce: Reduce,
    layout: str | None,
    drop_tokens: int | None,
    grid: tuple[int, int] | None,
) -> Tensor:
    """The guided pass's input gradient times Grad-CAM from the plain pass."""
    feature_maps = layer_feature_maps(context, "guided_grad_cam", drop_tokens, grid, layout)
    cam = grad_cam_from_activation(*feature_maps, context.size)
    return guided_grad_cam_from(context.guided.input_grad, cam, reduce)


def _check_options(reduce: object, layout: object, drop_tokens: object, grid: object) -> None:
    check_reduce(reduce)
    check_token_options(drop_tokens, grid, layout)


SPEC = register(
    MethodSpec(
        name="guided_grad_cam",
        summary="guided backprop times the upsampled Grad-CAM map, per channel (Selvaraju et al., 2017)",
        compute=guided_grad_cam_from_pass,
        passes=frozenset({"plain", "guided"}),
        needs_layer=True,
        needs_float=True,
        defaults={"reduce": "max_abs", **LAYOUT_DEFAULTS},
        check=_check_options,
    )
)


def guided_grad_cam(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    reduce: Reduce = "max_abs",
    *,
    output: OutputSpec = None,
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

        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W), or (N, C, H, W) with ``reduce=None``.

    Example:
        >>> maps = guided_grad_cam(model, images, layer="features")  # doctest: +SKIP
    """
    return explain_one("guided_grad_cam", model, inputs, target, layer, options={"reduce": reduce}, output=output)
