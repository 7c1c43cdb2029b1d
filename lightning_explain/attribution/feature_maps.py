"""Feature maps: what chosen layers output for a batch (one forward pass, no gradients)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_explain.core.gradients import check_inputs
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.recording import check_logits, record_outputs


def capture_activations(model: nn.Module, inputs: Tensor, layers: dict[str, nn.Module]) -> tuple[Tensor, dict]:
    """One forward pass in eval mode under ``no_grad``: ``(logits, {name: the layer's output})``.

    Each output is copied when recorded, so an in-place op that follows cannot change it.

    Raises:
        ValueError: a layer that is not called, called more than once, or returns no tensor.
    """

    def copy_tensor(name: str, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"Feature maps need a layer whose output is a tensor; {name!r} returned {type(output).__name__}."
            )
        return output.detach().clone()

    logits, captured = record_outputs(model, inputs, layers, recorder=copy_tensor)
    logits = check_logits(logits).detach()
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
