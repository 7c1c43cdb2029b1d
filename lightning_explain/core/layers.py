"""Resolve the layer Grad-CAM explains: a module, a dotted name, or found automatically."""

from __future__ import annotations

import difflib
import weakref

from torch import Tensor, nn

from lightning_explain.core.compiled import get_layer, named_eager_modules, plain_layer_name, uncompiled
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
    """Name of the last module whose output is spatial, ``(N, C, H, W)`` with ``H * W > 1``.

    That is the last feature map before global pooling or flattening: the layer Grad-CAM
    explains by default. Found with one forward pass of a single sample in eval mode under
    ``torch.no_grad()``, then cached per model and input shape.

    Example:
        >>> find_target_layer(model, images)  # doctest: +SKIP
        'features'
    """
    key = (tuple(inputs.shape[1:]), inputs.dtype)
    cache = _FOUND_LAYERS.setdefault(model, {})
    if key in cache:
        return cache[key]
    spatial: list[str] = []

    def note(name: str, output: object) -> None:
        if isinstance(output, Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
            spatial.append(name)

    hooked = {name: module for name, module in named_eager_modules(model) if name}  # plain names, eager modules
    record_outputs(model, inputs[:1], hooked, recorder=note)
    if not spatial:
        raise ValueError(
            f"Grad-CAM needs a layer with spatial output (N, C, H, W), and no module of "
            f"{type(model).__name__} produces one for inputs of shape {tuple(inputs.shape)}. "
            "Pass layer= explicitly, or drop 'grad_cam' from methods."
        )
    cache[key] = spatial[-1]
    return spatial[-1]
