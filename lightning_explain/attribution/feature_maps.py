"""Feature maps: what chosen layers output for a batch (one forward pass, no gradients)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_explain.attribution._multipass import check_logits
from lightning_explain.core.gradients import check_inputs, explanation_mode
from lightning_explain.core.layers import LayerSpec, resolve_layer


def capture_activations(model: nn.Module, inputs: Tensor, layers: dict[str, nn.Module]) -> tuple[Tensor, dict]:
    """One forward pass in eval mode under ``no_grad``: ``(logits, {name: the layer's output})``.

    Each output is copied when recorded, so an in-place op that follows cannot change it.

    Raises:
        ValueError: a layer that is not called, called more than once, or returns no tensor.
    """
    captured: dict[str, list[Tensor]] = {name: [] for name in layers}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"Feature maps need a layer whose output is a tensor; {name!r} returned {type(output).__name__}."
                )
            captured[name].append(output.detach().clone())

        return hook

    with explanation_mode(model, inputs.device) as handles, torch.no_grad():
        for name, module in layers.items():
            handles.append(module.register_forward_hook(record(name)))
        logits = check_logits(model(inputs.detach().clone())).detach()
    for name, outputs in captured.items():
        if len(outputs) != 1:
            raise ValueError(
                f"Layer {name!r} was called {len(outputs)} times in one forward pass; feature maps need a layer "
                "that runs exactly once. Choose another layer."
            )
    return logits, {name: outputs[0] for name, outputs in captured.items()}


def feature_maps(
    model: nn.Module, inputs: Tensor, layer: LayerSpec | Sequence[LayerSpec] = None
) -> Tensor | dict[str, Tensor]:
    """The output of one or several layers for ``inputs``, in eval mode, as float32.

    Render them with :func:`lightning_explain.render.grids.render_feature_maps` (one row per
    sample, one tile per channel). Inside :func:`~lightning_explain.attribution.explain` the
    feature maps are those of Grad-CAM's layer, taken from the shared pass.

    Args:
        model: the model.
        inputs: a batch (N, ...).
        layer: a submodule, its dotted name, ``None`` (the last spatial layer, as for Grad-CAM),
            or a list of these.

    Returns:
        The layer's output (N, C, h, w) for a single layer; ``{name: output}`` for a list.

    Example:
        >>> maps = feature_maps(model, images, layer=["features.0", "features.2"])  # doctest: +SKIP
    """
    check_inputs(inputs, need_float=False)
    specs = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not specs:
        raise ValueError("layer= must name at least one layer (or be None for the last spatial layer).")
    modules = dict(resolve_layer(model, spec, inputs) for spec in specs)
    _, outputs = capture_activations(model, inputs, modules)
    outputs = {name: value.float() for name, value in outputs.items()}
    return outputs if isinstance(layer, (list, tuple)) else next(iter(outputs.values()))
