"""The pass engine: several attribution methods for one batch, each shared pass run once, targets resolved once.

The engine knows methods only through the registry (:mod:`lightning_explain.attribution.registry`): it checks
names and options against the registered specs, runs the shared passes the chosen methods read (the plain
gradient pass, a forward recording of the layer, the guided pass) at most once each, fixes the explained class
once for all of them, and hands each method's ``compute`` a
:class:`~lightning_explain.attribution.registry.MethodContext`.
It never imports a method module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lightning_explain.attribution.passes import guided_gradient_pass
from lightning_explain.attribution.registry import MethodContext, MethodSpec, get_spec, method_names
from lightning_explain.core.attention import find_attention
from lightning_explain.core.gradients import check_inputs, gradient_pass
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.layout import LayerLayout
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import capture_layer_outputs, check_logits, record_outputs
from lightning_explain.core.targets import Target, TargetSpec, resolve_target

GRADIENT_METHODS = ("saliency", "grad_cam")
"""The default methods: both from one forward and one backward pass."""


def check_methods(methods: Sequence[str], input_kind: str = "dense") -> tuple[str, ...]:
    """Validate method names against the registry (the methods of ``input_kind``); return them as a tuple without
    duplicates, in the given order."""
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    names = method_names(input_kind)
    if not methods:
        raise ValueError(f"methods must name at least one method; valid choices: {list(names)}.")
    unknown = [m for m in methods if m not in names]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid choices: {list(names)}.")
    return methods


def check_options(
    options: Mapping[str, Mapping[str, Any]] | None, methods: Sequence[str] | None = None, input_kind: str = "dense"
) -> dict[str, dict[str, Any]]:
    """Validate ``{method: {option: value}}``: known methods of ``input_kind`` (among ``methods`` if given), their
    options and values.

    Returns only what was given (the defaults are filled in when a method runs).
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict {{method: {{option: value}}}}, got {type(options).__name__}.")
    checked: dict[str, dict[str, Any]] = {}
    names = method_names(input_kind)
    for method, values in options.items():
        if method not in names:
            raise ValueError(f"options names unknown method {method!r}; valid choices: {list(names)}.")
        if methods is not None and method not in methods:
            raise ValueError(f"options are given for {method!r}, which is not in methods={list(methods)}; add it.")
        if not isinstance(values, Mapping):
            raise ValueError(f"options[{method!r}] must be a dict of keyword options, got {type(values).__name__}.")
        get_spec(method, input_kind).check_options(values)
        checked[method] = dict(values)
    return checked


@dataclass
class Explanation:
    """Maps from one call, with what the model predicted and which class was explained.

    Attributes:
        maps: method name -> float32 map (N, H, W) (or (N, C, H, W) for a method given
            ``reduce=None``); ``feature_maps`` is not here but in ``activation``.
        logits: the model's detached output (the tensor ``output=`` selects).
        targets: the explained class per sample (N,), or ``None`` for a single-output model or a callable target.
        layer_name: the layer's name, or ``None`` when no method needed a layer.
        activation: the layer's output (N, C, h, w) as float32 when ``feature_maps`` was requested.
        target: the resolved :class:`~lightning_explain.core.targets.Target` (for segmentation, its mask).
        layout: how the layer methods read the layer's output
            (:class:`~lightning_explain.core.layout.LayerLayout`: feature map, channels-last, or tokens with the
            prefix tokens dropped and the patch grid), ``None`` when no layer method ran.
    """

    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor | None
    layer_name: str | None
    activation: Tensor | None = None
    target: Target | None = None
    layout: LayerLayout | None = None


def compute_explanation(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    output: OutputSpec = None,
) -> Explanation:
    """Like :func:`explain`, but also return the logits, the targets, the layer's name and its activation."""
    output = check_output_spec(output)
    methods = check_methods(methods)
    options = check_options(options, methods)
    specs = [get_spec(m) for m in methods]
    check_inputs(inputs, need_float=any(s.needs_float for s in specs))
    name, module = _layer(model, inputs, layer, specs)
    for spec in specs:
        if spec.needs_attention:
            find_attention(model, spec.name)  # a model without attention is refused before any pass runs
    passes = set().union(*(s.passes for s in specs))
    logits = resolved = activation = plain = guided = None
    if "plain" in passes:
        wants_input_grad = any(s.input_grad for s in specs)
        plain = gradient_pass(
            model, inputs, target, layer=module, layer_name=name or "", input_grad=wants_input_grad, output=output
        )
        logits, resolved, activation = plain.logits, plain.target, plain.activation
    elif "forward" in passes:  # the layer's output alone: a forward pass is enough
        logits, recorded = capture_layer_outputs(model, inputs, {name: module}, output)
        activation = recorded[name]
        resolved = resolve_target(logits, target, output)
    if "guided" in passes:
        guided = guided_gradient_pass(model, inputs, target if resolved is None else resolved, output=output)
        logits, resolved = guided.logits, guided.target
    if logits is None:  # only methods with their own passes: fix the targets first
        raw, _ = record_outputs(model, inputs, {})
        logits = check_logits(raw, output).detach()
        resolved = resolve_target(logits, target, output)
    context = MethodContext(
        model=model,
        inputs=inputs,
        target=resolved,
        logits=logits,
        layer_name=name,
        plain=plain,
        guided=guided,
        activation=activation,
        layer=module,
    )
    maps: dict[str, Tensor] = {}
    features = None
    for spec in specs:  # the options were checked above: fill in the defaults only
        value = spec.compute(context, **{**spec.defaults, **options.get(spec.name, {})})
        if spec.output == "activation":
            features = value
        else:
            maps[spec.name] = value
    return Explanation(
        maps=maps,
        logits=logits,
        targets=resolved.index,
        layer_name=name,
        activation=features,
        target=resolved,
        layout=context.layout,
    )


def _layer(
    model: nn.Module, inputs: Tensor, layer: LayerSpec, specs: Sequence[MethodSpec]
) -> tuple[str | None, nn.Module | None]:
    """The layer the chosen methods explain, after checking that the inputs are images where a method needs them."""
    layered = [s.name for s in specs if s.needs_layer]
    if layered and inputs.ndim != 4:
        raise ValueError(
            f"{layered} map a layer back onto images (N, C, H, W); got inputs of shape {tuple(inputs.shape)}. "
            "Drop them from methods for non-image inputs."
        )
    for spec in specs:
        if spec.needs_images and inputs.ndim != 4:
            raise ValueError(
                f"{spec.name} {spec.images_reason} (N, C, H, W); got inputs of shape {tuple(inputs.shape)}. "
                f"Drop '{spec.name}' from methods for non-image inputs."
            )
    return resolve_layer(model, layer, inputs) if layered else (None, None)


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    output: OutputSpec = None,
) -> dict[str, Tensor]:
    """Every requested method for one batch, sharing passes where they can.

    ``saliency``, ``gradient_x_input``, ``grad_cam``, ``grad_cam_pp`` and the Grad-CAM factor of
    ``guided_grad_cam`` come from ONE forward and ONE backward pass (which also records ``feature_maps``);
    ``guided_backprop`` and ``guided_grad_cam`` share one guided pass; ``integrated_gradients``,
    ``smoothgrad`` and ``occlusion`` run their own batched passes for the same targets.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: the layer of the Grad-CAM methods and of ``feature_maps``: a submodule, its
            dotted name, or ``None`` (automatic).
        methods: names from :data:`lightning_explain.attribution.METHODS`; default ``("saliency", "grad_cam")``.
        options: per-method keyword options, e.g. ``{"integrated_gradients": {"steps": 64},
            "occlusion": {"window": 4}}``; see :data:`lightning_explain.attribution.METHOD_OPTIONS`.
        output: which tensor of the model's output to explain: ``None`` = a tensor as is, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; a dict key, a tuple index or a callable
            ``(output) -> Tensor`` otherwise (:func:`~lightning_explain.core.outputs.select_output`).

    Returns:
        ``{method: float32 map (N, H, W)}``, equal to calling each method on its own; for
        ``feature_maps`` the layer's output (N, C, h, w).

    Example:
        >>> maps = explain(model, images, target=labels)  # doctest: +SKIP
        >>> sorted(maps)
        ['grad_cam', 'saliency']
    """
    explanation = compute_explanation(model, inputs, target, layer, methods, options=options, output=output)
    maps = dict(explanation.maps)
    if explanation.activation is not None:
        maps = {m: explanation.activation if m == "feature_maps" else maps[m] for m in check_methods(methods)}
    return maps


def explain_one(
    name: str,
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    options: Mapping[str, Any] | None = None,
    output: OutputSpec = None,
) -> Tensor:
    """One method's map through the engine: what each method's public function returns.

    Example:
        >>> maps = explain_one("saliency", model, images, options={"reduce": "sum"})  # doctest: +SKIP
    """
    return explain(model, inputs, target, layer, (name,), options={name: dict(options or {})}, output=output)[name]
