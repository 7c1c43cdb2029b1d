"""Feature maps: what chosen layers output for a batch (one forward pass, no gradients)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.gradients import check_inputs
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.recording import capture_layer_outputs


def feature_maps_from_pass(context: MethodContext) -> Tensor:
    """The layer's output, recorded by the plain pass or by a forward pass, as float32."""
    return context.activation.float()


SPEC = register(
    MethodSpec(
        name="feature_maps",
        summary="the layer's output itself, one tile per channel (not a heatmap)",
        compute=feature_maps_from_pass,
        passes=frozenset({"forward"}),
        needs_layer=True,
        output="activation",
    )
)


def feature_maps(
    model: nn.Module, inputs: Tensor, layer: LayerSpec | Sequence[LayerSpec] = None, *, output: OutputSpec = None
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
        output: which tensor of the model's output is its result, checked to be a tensor (see
            :func:`~lightning_explain.attribution.explain`).

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
    _, outputs = capture_layer_outputs(model, inputs, modules, output)
    outputs = {name: value.float() for name, value in outputs.items()}
    return outputs if isinstance(layer, (list, tuple)) else next(iter(outputs.values()))
