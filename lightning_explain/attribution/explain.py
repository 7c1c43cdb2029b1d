"""Several gradient methods from one forward and one backward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from lightning_explain.attribution._layers import LayerSpec, resolve_layer
from lightning_explain.attribution._pass import check_inputs, gradient_pass
from lightning_explain.attribution._targets import TargetSpec
from lightning_explain.attribution.grad_cam import check_spatial_inputs, grad_cam_from_activation
from lightning_explain.attribution.saliency import saliency_from_gradient

GRADIENT_METHODS = ("saliency", "grad_cam")
"""Method names :func:`explain` accepts."""

_NEEDS_LAYER = {"grad_cam"}
_NEEDS_INPUT_GRAD = {"saliency"}


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Validate method names; return them as a tuple without duplicates, in the given order."""
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ValueError(f"methods must name at least one method; valid choices: {list(GRADIENT_METHODS)}.")
    unknown = [m for m in methods if m not in GRADIENT_METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid choices: {list(GRADIENT_METHODS)}.")
    return methods


@dataclass
class Explanation:
    """Maps from one pass, with what the model predicted and which class was explained.

    Attributes:
        maps: method name -> float32 (N, H, W) map.
        logits: the model's detached output.
        targets: the explained class per sample (N,), or ``None`` for a single-output model.
        layer_name: the Grad-CAM layer's name, or ``None`` when no method needed a layer.
    """

    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor | None
    layer_name: str | None


def compute_explanation(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
) -> Explanation:
    """Like :func:`explain`, but also return the logits, the targets and the layer's name."""
    methods = check_methods(methods)
    need_layer = any(m in _NEEDS_LAYER for m in methods)
    need_input_grad = any(m in _NEEDS_INPUT_GRAD for m in methods)
    check_inputs(inputs, need_float=need_input_grad)
    name, module = None, None
    if need_layer:
        check_spatial_inputs(inputs)
        name, module = resolve_layer(model, layer, inputs)
    result = gradient_pass(model, inputs, target, layer=module, layer_name=name or "", input_grad=need_input_grad)
    maps: dict[str, Tensor] = {}
    for method in methods:
        if method == "saliency":
            maps[method] = saliency_from_gradient(result.input_grad)
        elif method == "grad_cam":
            size = tuple(inputs.shape[2:])
            maps[method] = grad_cam_from_activation(result.activation, result.activation_grad, size)
    return Explanation(maps=maps, logits=result.logits, targets=result.targets, layer_name=name)


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
) -> dict[str, Tensor]:
    """Every requested gradient method from ONE forward and ONE backward pass.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: Grad-CAM's layer: a submodule, its dotted name, or ``None`` (automatic).
        methods: names from :data:`GRADIENT_METHODS`.

    Returns:
        ``{method: float32 map (N, H, W)}``, equal to calling each method on its own.

    Example:
        >>> maps = explain(model, images, target=labels)  # doctest: +SKIP
        >>> sorted(maps)
        ['grad_cam', 'saliency']
    """
    return compute_explanation(model, inputs, target, layer, methods).maps
