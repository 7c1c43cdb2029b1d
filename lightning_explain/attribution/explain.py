"""Several attribution methods for one batch, sharing passes where they can."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lightning_explain.attribution._multipass import check_chunk_size
from lightning_explain.attribution._reduce import check_reduce, reduce_channels
from lightning_explain.attribution.feature_attribution import tokens_to_grid
from lightning_explain.attribution.feature_maps import capture_activations
from lightning_explain.attribution.grad_cam import grad_cam_from_activation
from lightning_explain.attribution.grad_cam_pp import grad_cam_pp_from_activation
from lightning_explain.attribution.guided_backprop import guided_gradient_pass
from lightning_explain.attribution.guided_grad_cam import guided_grad_cam_from
from lightning_explain.attribution.integrated_gradients import integrated_gradients, integration_points
from lightning_explain.attribution.occlusion import check_window, occlusion
from lightning_explain.attribution.smoothgrad import check_noise_options, smoothgrad
from lightning_explain.core.gradients import check_inputs, gradient_pass
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.recording import forward_logits
from lightning_explain.core.targets import TargetSpec

METHODS = (
    "saliency",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "smoothgrad",
    "occlusion",
    "feature_maps",
)
"""Every method name :func:`explain` and ``ExplainCallback(methods=...)`` accept."""

GRADIENT_METHODS = ("saliency", "grad_cam")
"""The default methods: both from one forward and one backward pass (kept for compatibility)."""

_NEEDS_LAYER = {"grad_cam", "grad_cam_pp", "guided_grad_cam", "feature_maps"}
_PLAIN_PASS = {"saliency", "grad_cam", "grad_cam_pp", "guided_grad_cam", "feature_maps"}  # shared pass
_GUIDED_PASS = {"guided_backprop", "guided_grad_cam"}  # shared guided pass
_MULTI_PASS = {"integrated_gradients": integrated_gradients, "smoothgrad": smoothgrad, "occlusion": occlusion}
_NEEDS_FLOAT = {"saliency", "integrated_gradients", "smoothgrad", "occlusion"} | _GUIDED_PASS

_TOKEN_OPTIONS = ("drop_tokens", "grid")  # a token layer (N, T, D) read as a patch grid (ViT-style)

METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    **{name: () for name in METHODS},
    "saliency": ("reduce",),
    "grad_cam": _TOKEN_OPTIONS,
    "grad_cam_pp": _TOKEN_OPTIONS,
    "guided_backprop": ("reduce",),
    "guided_grad_cam": ("reduce", *_TOKEN_OPTIONS),
    **{
        name: tuple(p for p in inspect.signature(fn).parameters if p not in ("model", "inputs", "target"))
        for name, fn in _MULTI_PASS.items()
    },
}
"""The keyword options each method takes in ``options=`` (see the method's own function).

The Grad-CAM methods also take ``drop_tokens`` and ``grid`` for a transformer's token layer:
its (N, T, D) output loses the first ``drop_tokens`` tokens (1 = a CLS token) and is reshaped
to the patch grid ``grid=(h, w)`` (square when left out), as
:func:`lightning_explain.attribution.token_grad_cam` does."""


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Validate method names; return them as a tuple without duplicates, in the given order."""
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ValueError(f"methods must name at least one method; valid choices: {list(METHODS)}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; valid choices: {list(METHODS)}.")
    return methods


def check_options(
    options: Mapping[str, Mapping[str, Any]] | None, methods: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Validate ``{method: {option: value}}``: known methods (among ``methods`` if given) and their options."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict {{method: {{option: value}}}}, got {type(options).__name__}.")
    checked: dict[str, dict[str, Any]] = {}
    for method, values in options.items():
        if method not in METHODS:
            raise ValueError(f"options names unknown method {method!r}; valid choices: {list(METHODS)}.")
        if methods is not None and method not in methods:
            raise ValueError(f"options are given for {method!r}, which is not in methods={list(methods)}; add it.")
        if not isinstance(values, Mapping):
            raise ValueError(f"options[{method!r}] must be a dict of keyword options, got {type(values).__name__}.")
        unknown = [key for key in values if key not in METHOD_OPTIONS[method]]
        if unknown:
            valid = list(METHOD_OPTIONS[method]) or "none"
            raise ValueError(f"{method} takes no option(s) {unknown}; its options: {valid}.")
        if "reduce" in values:
            check_reduce(values["reduce"])
        _check_values(method, values)
        drop = values.get("drop_tokens", 0)
        if isinstance(drop, bool) or not isinstance(drop, int) or drop < 0:
            raise ValueError(f"options[{method!r}]['drop_tokens'] must be an int >= 0, got {drop!r}.")
        checked[method] = dict(values)
    return checked


def _check_values(method: str, values: Mapping[str, Any]) -> None:
    """The checks of a multi-pass method's own arguments that need no model or input, so ``__init__`` can run them."""
    if method not in _MULTI_PASS:
        return
    defaults = {name: p.default for name, p in inspect.signature(_MULTI_PASS[method]).parameters.items()}
    given = {**defaults, **values}
    check_chunk_size(given["chunk_size"])
    if method == "integrated_gradients":
        integration_points(given["steps"], given["method"])
    elif method == "smoothgrad":
        check_noise_options(given["samples"], given["noise"], given["seed"])
    else:
        check_window(given["window"], given["stride"])


@dataclass
class Explanation:
    """Maps from one call, with what the model predicted and which class was explained.

    Attributes:
        maps: method name -> float32 map (N, H, W) (or (N, C, H, W) for a method given
            ``reduce=None``); ``feature_maps`` is not here but in ``activation``.
        logits: the model's detached output.
        targets: the explained class per sample (N,), or ``None`` for a single-output model.
        layer_name: the layer's name, or ``None`` when no method needed a layer.
        activation: the layer's output (N, C, h, w) as float32 when ``feature_maps`` was requested.
    """

    maps: dict[str, Tensor]
    logits: Tensor
    targets: Tensor | None
    layer_name: str | None
    activation: Tensor | None = None


def compute_explanation(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Explanation:
    """Like :func:`explain`, but also return the logits, the targets, the layer's name and its activation."""
    methods = check_methods(methods)
    options = check_options(options, methods)
    chosen = set(methods)
    check_inputs(inputs, need_float=bool(chosen & _NEEDS_FLOAT))
    name, module = None, None
    if chosen & _NEEDS_LAYER:
        if inputs.ndim != 4:
            layered = [m for m in methods if m in _NEEDS_LAYER]
            raise ValueError(
                f"{layered} map a layer back onto images (N, C, H, W); got inputs of shape {tuple(inputs.shape)}. "
                "Drop them from methods for non-image inputs."
            )
        name, module = resolve_layer(model, layer, inputs)
    logits = targets = activation = plain = guided = None
    if chosen & (_PLAIN_PASS - {"feature_maps"}):
        plain = gradient_pass(
            model, inputs, target, layer=module, layer_name=name or "", input_grad="saliency" in chosen
        )
        logits, targets, activation = plain.logits, plain.targets, plain.activation
    elif "feature_maps" in chosen:  # feature maps alone: a forward pass is enough
        logits, captured = capture_activations(model, inputs, {name: module})
        activation = captured[name]
    if chosen & _GUIDED_PASS:
        guided = guided_gradient_pass(model, inputs, target if logits is None else _resolved(targets, target))
        logits, targets = guided.logits, guided.targets
    if logits is None:
        logits, targets = forward_logits(model, inputs, target)
    size = tuple(inputs.shape[2:])
    maps: dict[str, Tensor] = {}
    for method in methods:
        opts = options.get(method, {})
        if method == "saliency":
            maps[method] = reduce_channels(plain.input_grad, opts.get("reduce", "max_abs"))
        elif method == "grad_cam":
            maps[method] = grad_cam_from_activation(*_spatial(plain, opts, method), size)
        elif method == "grad_cam_pp":
            maps[method] = grad_cam_pp_from_activation(*_spatial(plain, opts, method), size)
        elif method == "guided_backprop":
            maps[method] = reduce_channels(guided.input_grad, opts.get("reduce", "max_abs"))
        elif method == "guided_grad_cam":
            cam = grad_cam_from_activation(*_spatial(plain, opts, method), size)
            maps[method] = guided_grad_cam_from(guided.input_grad, cam, opts.get("reduce", "max_abs"))
        elif method in _MULTI_PASS:
            maps[method] = _MULTI_PASS[method](model, inputs, _resolved(targets, target), **opts)
    features = None if activation is None or "feature_maps" not in chosen else activation.float()
    return Explanation(maps=maps, logits=logits, targets=targets, layer_name=name, activation=features)


def _spatial(plain: Any, opts: Mapping[str, Any], method: str) -> tuple[Tensor, Tensor]:
    """The layer's activation and its gradient as feature maps (N, C, h, w); token layers via the token options."""
    activation, gradient = plain.activation, plain.activation_grad
    if activation.ndim == 3 and any(key in opts for key in _TOKEN_OPTIONS):
        grid, drop = opts.get("grid"), opts.get("drop_tokens", 0)
        return tokens_to_grid(activation, grid, drop), tokens_to_grid(gradient, grid, drop)
    if activation.ndim == 3:
        raise ValueError(
            f"{method}: the layer returns tokens {tuple(activation.shape)} (N, T, D), not feature maps. For a "
            f"transformer layer pass options {{'{method}': {{'drop_tokens': 1}}}} (1 = a CLS token; add "
            "'grid': (h, w) for a patch grid that is not square), or pick a convolutional layer."
        )
    return activation, gradient


def _resolved(targets: Tensor | None, target: TargetSpec) -> TargetSpec:
    """The targets a first pass chose, so later passes explain the same class (``None``: single output)."""
    return target if targets is None else targets


def explain(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    layer: LayerSpec = None,
    methods: Sequence[str] = GRADIENT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Tensor]:
    """Every requested method for one batch, sharing passes where they can.

    ``saliency``, ``grad_cam``, ``grad_cam_pp`` and the Grad-CAM factor of ``guided_grad_cam``
    come from ONE forward and ONE backward pass (which also records ``feature_maps``);
    ``guided_backprop`` and ``guided_grad_cam`` share one guided pass; ``integrated_gradients``,
    ``smoothgrad`` and ``occlusion`` run their own batched passes for the same targets.

    Args:
        model: a classifier returning logits (N, K).
        inputs: a batch (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        layer: the layer of the Grad-CAM methods and of ``feature_maps``: a submodule, its
            dotted name, or ``None`` (automatic).
        methods: names from :data:`METHODS`; default ``("saliency", "grad_cam")``.
        options: per-method keyword options, e.g. ``{"integrated_gradients": {"steps": 64},
            "occlusion": {"window": 4}}``; see :data:`METHOD_OPTIONS`.

    Returns:
        ``{method: float32 map (N, H, W)}``, equal to calling each method on its own; for
        ``feature_maps`` the layer's output (N, C, h, w).

    Example:
        >>> maps = explain(model, images, target=labels)  # doctest: +SKIP
        >>> sorted(maps)
        ['grad_cam', 'saliency']
    """
    explanation = compute_explanation(model, inputs, target, layer, methods, options=options)
    maps = dict(explanation.maps)
    if explanation.activation is not None:
        maps = {m: explanation.activation if m == "feature_maps" else maps[m] for m in check_methods(methods)}
    return maps
