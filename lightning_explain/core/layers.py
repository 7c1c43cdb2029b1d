"""Resolve the layer Grad-CAM explains: a module, a dotted name, or found automatically."""

from __future__ import annotations

import difflib
import weakref

from torch import Tensor, nn

from lightning_explain.core.compiled import get_layer, named_eager_modules, plain_layer_name, uncompiled
from lightning_explain.core.layout import detect_layout, model_prefix_tokens, spatial_cells
from lightning_explain.core.outputs import select_output
from lightning_explain.core.recording import record_outputs

LayerSpec = nn.Module | str | None

# model -> {(input shape without batch, dtype): layer name}; filled by find_target_layer.
_FOUND_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_layer(model: nn.Module, layer: LayerSpec, inputs: Tensor) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for ``layer`` inside ``model``.

    Args:
        model: the model being explained.
        layer: a submodule, a dotted name from ``model.named_modules()``, or ``None`` to
            pick the layer automatically with :func:`find_target_layer`. Names inside a compiled
            module may be written with or without ``_orig_mod``; a compiled module stands for its
            uncompiled module (:mod:`~lightning_explain.core.compiled`).
        inputs: a batch shaped like the ones to explain (used only when ``layer`` is None).

    Returns:
        the plain name (without ``_orig_mod`` segments) and the eager module.

    Raises:
        ValueError: a name that does not exist (with close matches), or a module that is
            not part of ``model``.
    """
    if layer is None:
        name = find_target_layer(model, inputs)
        return name, get_layer(model, name)
    if isinstance(layer, str):
        modules = dict(named_eager_modules(model))
        if plain_layer_name(layer) not in modules:
            names = [n for n in modules if n]
            close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"layer={layer!r} is not a module of {type(model).__name__}.{hint} "
                f"Valid names come from model.named_modules(), e.g. {names[-3:]}."
            )
        name = plain_layer_name(layer)
        return name, modules[name]
    if isinstance(layer, nn.Module):
        eager = uncompiled(layer)
        for name, module in named_eager_modules(model):
            if module is eager:
                return name, module
        raise ValueError(
            f"The layer {type(layer).__name__} passed as layer= is not a submodule of "
            f"{type(model).__name__}; pass a module of the model itself or its dotted name."
        )
    raise TypeError(f"layer must be an nn.Module, a dotted module name or None, got {type(layer).__name__}.")


def find_target_layer(model: nn.Module, inputs: Tensor) -> str:
    """Name of the layer a layer method explains by default, found from one forward pass.

    - A transformer (a model with attention modules: a class named ``*Attention*`` or ``nn.MultiheadAttention``):
      the token sequence the last attention block attends over, i.e. the last output completed before the last
      attention module starts (pytorch-grad-cam's recipe: timm ``blocks[-1].norm1``, torchvision
      ``encoder.layers[-1].ln_1``, Hugging Face ``layer[-1].layernorm_before``, Swin's last ``norm1``), when it is
      tokens (N, T, D) or a channels-last map (N, H, W, C).
    - Otherwise: the last output with spatial extent, (N, C, H, W) or (N, H, W, C) with ``H * W > 1``, or tokens
      that form a patch grid of the input: the last feature map before global pooling or flattening.

    Outputs inside an attention module are never chosen. One forward pass of a single sample in eval mode under
    ``torch.no_grad()``, then cached per model and input shape; the layout is read when the method runs
    (:func:`~lightning_explain.core.layout.detect_layout`).

    Example:
        >>> find_target_layer(model, images)  # doctest: +SKIP
        'features'
    """
    key = (tuple(inputs.shape[1:]), inputs.dtype)
    cache = _FOUND_LAYERS.setdefault(model, {})
    if key in cache:
        return cache[key]
    modules = {name: module for name, module in named_eager_modules(model) if name}  # plain names, eager modules
    completed: list[tuple[str, tuple[int, ...]]] = []  # every call, in completion order; () for non-tensors

    def note(name: str, output: object) -> None:
        completed.append((name, tuple(output.shape) if isinstance(output, Tensor) else ()))

    output, _ = record_outputs(model, inputs[:1], modules, recorder=note)
    attention = _outermost([name for name, module in modules.items() if _is_attention(module)])
    prefix = model_prefix_tokens(model)

    def inside_attention(name: str) -> bool:
        return any(name == a or name.startswith(a + ".") for a in attention)

    def candidate(name: str, shape: tuple[int, ...]) -> bool:
        if inside_attention(name):
            return False
        if len(shape) == 4:
            return spatial_cells(shape, inputs.shape, modules[name]) > 1
        if len(shape) == 3 and inputs.ndim == 4 and shape[1] > 1:
            try:
                detect_layout(None, shape, inputs.shape, drop_tokens=prefix)  # the prefix read once, above
            except ValueError:
                return False
            return True
        return False

    chosen = _before_last_attention(completed, attention, candidate, modules, inputs)
    if chosen is None:
        spatial = [name for name, shape in completed if candidate(name, shape)]
        if not spatial:
            raise ValueError(
                f"Grad-CAM needs a layer with spatial output (N, C, H, W) or patch tokens (N, T, D), and no module "
                f"of {type(model).__name__} produces one for inputs of shape {tuple(inputs.shape)}. Pass layer= "
                "explicitly, or drop 'grad_cam' from methods."
            )
        chosen = _before_segmentation_logits(spatial, dict(c for c in completed if c[1]), output)
    cache[key] = chosen
    return chosen


def _before_segmentation_logits(spatial: list[str], shapes: dict[str, tuple[int, ...]], output: object) -> str:
    """The last spatial layer, passing over a segmentation model's class-logit layers at the end.

    For a model whose output is a feature map of K class logits (N, K, H, W), Grad-CAM at the layer that makes
    those logits only repeats them; the layer before, the last one with another channel count, is the features.
    """
    try:
        logits = select_output(output)
    except TypeError:
        logits = next((v for v in output.values() if isinstance(v, Tensor)), None) if isinstance(output, dict) else None
    if not isinstance(logits, Tensor) or logits.ndim != 4:
        return spatial[-1]
    features = [name for name in spatial if shapes[name][1] != logits.shape[1]]
    return features[-1] if features else spatial[-1]


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


def _outermost(names: list[str]) -> list[str]:
    return [n for n in names if not any(n.startswith(other + ".") for other in names if other != n)]


def _before_last_attention(completed, attention, candidate, modules, inputs) -> str | None:
    """The last candidate completed before the last attention module starts, if it is tokens or channels-last."""
    if not attention:
        return None
    starts = []
    for block in attention:
        first = next(
            (i for i, (name, _) in enumerate(completed) if name == block or name.startswith(block + ".")), None
        )
        if first is not None:
            starts.append(first)
    if not starts:
        return None
    before = [(name, shape) for name, shape in completed[: max(starts)] if candidate(name, shape)]
    if not before:
        return None
    name, shape = before[-1]
    if len(shape) == 3:
        return name
    layout = detect_layout(None, shape, inputs.shape, module=modules[name])
    return name if layout.kind == "nhwc" else None
