"""ExplainCallback: saliency and Grad-CAM of a fixed probe batch, in TensorBoard, during training."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException, rank_zero_info
from lightning_explain.analysis.map_statistics import ChangeSeries, map_ranks, top_mass
from lightning_explain.attribution import Explanation, compute_explanation
from lightning_explain.attribution.engine import check_methods, check_options
from lightning_explain.callbacks._explained_layer import describe_run, layer_markdown
from lightning_explain.callbacks._heads import (
    detect_head,
    head_target,
    head_target_mode,
    outcome_labels,
    sample_outcomes,
)
from lightning_explain.callbacks._quality import HEAD_SCORES, check_masks_for_probe, check_quality, quality_scalars
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks._target_choice import check_target_choice
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.layers import resolve_layer
from lightning_explain.core.layout import LayerLayout, detect_layout
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import check_logits, record_outputs
from lightning_explain.render.grids import (
    COLOR_SCALES,
    COLORMAPS,
    grid_metadata,
    render_explanation_grid,
    render_feature_maps,
)

TargetChoice = Literal["label", "predicted"] | int | Callable[[Any, Any], Tensor] | None


class ExplainCallback(ScheduledProbeCallback):
    """Log saliency maps and Grad-CAM heatmaps of a fixed probe batch while a model trains.

    At a baseline event before the first optimizer step (step 0), then every
    ``every_n_epochs`` epochs and/or ``every_n_steps`` steps, the callback explains the
    probe batch on the training device, in eval mode, without changing training, and logs
    at ``trainer.global_step``:

    - ``{prefix}/{method}`` (image): one cell per probe sample with its input, its heatmap alone
      and the heatmap over the input, under a bar that gives the true class (when the probe has
      labels), the predicted class and its probability, green where the prediction is right and
      red where it is wrong; a header gives the method, the step and the colour scale (see
      :func:`lightning_explain.render.grids.render_explanation_grid`);
    - ``{prefix}/{method}/concentration``: share of attribution in the top 10% of pixels
      (0.1 = spread evenly, 1 = all in a few pixels), mean over the probe;
    - ``{prefix}/{method}/change``: 1 − Spearman rank correlation with the previous event's
      maps (0 = the model looks at the same places, 1 = unrelated, up to 2 = reversed), mean over
      the probe;
    - ``{prefix}/{method}/mean``: the mean attribution value (the maps' raw magnitude);
    - ``{prefix}/probe_accuracy``: accuracy on the probe, when it has labels;
    - with ``quality=``: ``{prefix}/{method}/deletion_auc``, ``insertion_auc``, ``pointing_game``,
      ``energy_in_mask``, and the same for random maps, ``{prefix}/random/...``.

    Args:
        probe: ``None`` = the first ``probe_size`` samples of the validation data, else of the
            training data; or a tensor of inputs; or an ``(inputs, targets)`` pair.
        probe_size: how many samples to take when ``probe`` is None.
        methods: any registered method's name (:data:`lightning_explain.attribution.METHODS`, built
            from the registry: :func:`lightning_explain.attribution.registered` lists each with what
            it shows). Heatmap methods are drawn as above; ``feature_maps`` (an ``output="activation"``
            method) gives ``{prefix}/feature_maps``, the layer's channels as a grid, a row per sample,
            and no scalars.
        method_options: keyword options per method, e.g. ``{"integrated_gradients": {"steps": 16},
            "occlusion": {"window": 4}}`` (see :data:`lightning_explain.attribution.METHOD_OPTIONS`);
            ``reduce=None`` is not accepted here, the callback draws one map per sample.
        layer: Grad-CAM's layer: a dotted module name, a module, or ``None`` = the last spatial
            layer before global pooling.
        target: which class to explain: ``"label"`` (the probe's labels), ``"predicted"``, a
            class index, or ``None`` = the label when the probe has labels, else the prediction.
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        every_n_epochs: log at the end of every this many epochs (``None`` = off).
        color_scale: ``"per_image"`` (default): each heatmap min-max normalised on its own, so its
            shape is always readable. ``"fixed"``: one scale per method for the whole run, set at
            the first event (the 99th percentile of its values) and saved in checkpoints, so growth
            and decay of the maps show as brightening and fading (values above it saturate).
        colormap: one of ``"inferno"``, ``"viridis"``, ``"turbo"``, ``"gray"``.
        overlay_alpha: in the overlay panel, the heatmap's weight over the (dimmed) input where the map
            is at its maximum, in [0, 1]; it falls with the heat, so the input shows where the map is low.
        unpack_batch: turns a batch of your dataloader into ``(inputs, targets or None)``; the
            default understands tensors, ``(inputs, targets, ...)`` tuples and common dict keys.
        output: the tensor of the model's output to read: ``None`` = a tensor as is, a dict's or ModelOutput's
            ``logits``, a tuple's first element; or a key, an index or a callable (see ``select_output``).
        quality: faithfulness and localisation metrics logged per method and event, beside random maps
            (``{prefix}/random/...``): ``"deletion"`` / ``"insertion"`` (``{prefix}/{method}/deletion_auc``,
            ``insertion_auc``: the target score's area as the top-ranked pixels are removed / restored, see
            :func:`~lightning_explain.attribution.deletion_insertion`), ``"pointing_game"`` and
            ``"energy_in_mask"`` (need ``masks``). ``None`` (default) = off: deletion and insertion cost about
            ``2 * 20`` forward passes of the probe per method and event.
        masks: bool (N, H, W), one per probe sample in the probe's order: where the object is, for the
            localisation metrics.
        prefix: the logging namespace.

    Example::

        trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[ExplainCallback(every_n_steps=100)])
        trainer.fit(model, datamodule=dm)  # then: tensorboard --logdir logs
    """

    _needs_images = True

    def __init__(
        self,
        *,
        probe: Any = None,
        probe_size: int = 8,
        methods: Sequence[str] = ("saliency", "grad_cam"),
        method_options: dict[str, dict[str, Any]] | None = None,
        layer: str | nn.Module | None = None,
        target: TargetChoice = None,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        color_scale: Literal["per_image", "fixed"] = "per_image",
        colormap: str = "inferno",
        overlay_alpha: float = 0.8,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        output: OutputSpec = None,
        quality: Sequence[str] | None = None,
        masks: Tensor | None = None,
        prefix: str = "explain",
    ) -> None:
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.output = check_output_spec(output)
        self.quality, self.masks = check_quality(quality, masks)
        self.methods = check_methods(methods)
        self.method_options = check_options(method_options, self.methods)
        if any("reduce" in opts and opts["reduce"] is None for opts in self.method_options.values()):
            raise ValueError("method_options: reduce=None gives per-channel maps, which the callback cannot draw.")
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.target = check_target_choice(target, callable_ok=True)
        if color_scale not in COLOR_SCALES:
            raise ValueError(f"color_scale must be one of {list(COLOR_SCALES)}, got {color_scale!r}.")
        if colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {sorted(COLORMAPS)}, got {colormap!r}.")
        if not 0 <= overlay_alpha <= 1:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha!r}.")
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise ValueError(f"layer must be a module name, a module or None, got {type(layer).__name__}.")
        self.layer = layer
        self.color_scale = color_scale
        self.colormap = colormap
        self.overlay_alpha = overlay_alpha
        self.prefix = prefix
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self._layer_module: nn.Module | None = None
        self._layer_name: str | None = None
        self._layer_layout: LayerLayout | None = None
        self._layer_logged = False
        self._device_masks: Tensor | None = None
        self._head = "classification"
        self._target_mode: str | int = "predicted"
        self._fixed_scales: dict[str, float] = {}
        self._change = ChangeSeries()  # per method

    def _state_key_fields(self) -> dict[str, Any]:
        layer = self.layer if isinstance(self.layer, str) or self.layer is None else type(self.layer).__name__
        return dict(
            methods=self.methods,
            layer=layer,
            target=self.target,
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            color_scale=self.color_scale,
            probe_size=self.probe_size,
            quality=self.quality,
            prefix=self.prefix,
        )

    _class_targets = False  # regression values and multi-label rows are kept for the head to read

    @property
    def layer_name(self) -> str | None:
        """The layer the layer methods explain (as found automatically or given), once ``fit`` has started."""
        return self._layer_name

    @property
    def layer_layout(self) -> LayerLayout | None:
        """How that layer's output is read (feature map, channels-last, or tokens with prefix tokens and grid)."""
        return self._layer_layout

    @property
    def head(self) -> str:
        """The model head found at fit start: ``"classification"``, ``"multilabel"``, ``"regression"``,
        ``"segmentation"`` or ``"custom"`` (a callable target)."""
        return self._head

    # ----------------------------------------------------------------------------------- hooks
    def _check_probe(self, probe: Probe) -> None:
        if probe.inputs.ndim == 2 and not probe.inputs.is_floating_point():
            raise MisconfigurationException(
                f"ExplainCallback draws heatmaps over images (N, C, H, W); the probe holds integers of shape "
                f"{tuple(probe.inputs.shape)}, token ids of a text model. Use TokenExplainCallback, which explains "
                "each token at the model's embedding layer."
            )
        if probe.inputs.ndim != 4:
            raise MisconfigurationException(
                f"ExplainCallback draws heatmaps over images and needs probe inputs of shape (N, C, H, W); got "
                f"{tuple(probe.inputs.shape)}. For tabular (N, F) or sequence (N, T[, D]) inputs use "
                "FeatureExplainCallback; for custom batches, pass unpack_batch= or probe= with image inputs."
            )
        check_masks_for_probe(self.masks, probe.inputs)
        self._device_masks = None if self.masks is None else self.masks.to(probe.inputs.device)

    def _dry_run(self, trainer: Any, pl_module: Any) -> Explanation:
        """Find the head, then explain the probe once with the configured layer: a bad output, target, layer or
        method stops ``fit`` here."""
        probe = self._device_probe
        raw, _ = record_outputs(pl_module, probe.inputs, {})
        logits = check_logits(raw, self.output)
        self._head = detect_head(logits, probe.targets, self.target, "ExplainCallback")
        self._target_mode = head_target_mode("ExplainCallback", self._head, self.target, probe.targets)
        explanation = self._explain(pl_module, layer=self.layer)
        if explanation.layer_name is not None:  # resolved once, reused at every event
            self._layer_name, self._layer_module = resolve_layer(pl_module, explanation.layer_name, probe.inputs)
            self._layer_layout = explanation.layout
            if self._layer_layout is None and explanation.activation is not None:  # feature maps alone
                with contextlib.suppress(ValueError):  # no spatial reading: refused below
                    self._layer_layout = detect_layout(
                        pl_module, explanation.activation.shape, probe.inputs.shape, module=self._layer_module
                    )
        activation = self._channels(explanation.activation)
        if activation is not None and activation.ndim != 4:
            raise MisconfigurationException(
                f"ExplainCallback(methods=[..., 'feature_maps']) draws the channels of a spatial layer, output "
                f"(N, C, h, w), but layer {explanation.layer_name!r} gives {tuple(activation.shape)}. Choose a "
                "convolutional layer with layer=, or drop 'feature_maps' from methods."
            )
        rank_zero_info(
            describe_run(type(self).__name__, self.methods, self._head, self._layer_name, self._layer_layout)
        )
        return explanation

    def _channels(self, activation: Tensor | None) -> Tensor | None:
        """The layer's output as channels (N, C, h, w), read in its layout (tokens and channels-last included)."""
        layout = self._layer_layout
        if activation is None or layout is None or activation.ndim != len(layout.shape):
            return activation
        return layout.feature_maps(activation)

    def _compute(self, pl_module: Any) -> Explanation:
        return self._explain(pl_module)

    # ------------------------------------------------------------------------------- the event
    def _explain(self, pl_module: Any, layer: str | nn.Module | None = None) -> Explanation:
        probe = self._device_probe
        layer = self._layer_module if layer is None else layer
        options = {"options": self.method_options} if self.method_options else {}
        target = head_target(self._target_mode, probe, self.target)
        return compute_explanation(pl_module, probe.inputs, target, layer, self.methods, output=self.output, **options)

    def _log_event(self, pl_module: Any, explanation: Explanation, step: int) -> None:
        names: list[str] = []
        values: list[Tensor] = []
        images: dict[str, Tensor] = {}
        cells: dict[str, list[list[int]]] = {}
        targets = self._device_probe.targets
        samples, correct = sample_outcomes(self._head, explanation.logits, targets, explanation.targets)
        labels = outcome_labels(self._head, samples, len(self._device_probe.inputs))
        outlines = explanation.target.mask if self._head == "segmentation" and explanation.target else None
        if outlines is not None and 0.0 in samples.get("area", ()):
            self._warn(
                "empty-segment",
                f"at step {step} the explained class is predicted on no pixel of some probe samples, so their "
                "segmentation score and maps are zero (their bar says AREA 0%); leave target=None to explain each "
                "sample's largest predicted class.",
            )
        if not self._layer_logged and self._layer_name is not None:
            text = layer_markdown(self._layer_name, self._head, self._layer_layout)
            self._writer.text(f"{self.prefix}/layer", text, step)
            self._layer_logged = True
        for method, maps in explanation.maps.items():
            if not bool(torch.isfinite(maps).all()):
                self._warn(f"nonfinite-{method}", f"{method} maps hold NaN or inf at step {step}; not logged.")
                continue
            if self._writer.can_log_images:
                images[method], cells[method] = render_explanation_grid(
                    self._device_probe.inputs,
                    maps,
                    scale=self._scale_for(method, maps),
                    colormap=self.colormap,
                    alpha=self.overlay_alpha,
                    correct=correct,
                    labels=labels,
                    outlines=outlines,
                    title=f"{method}  step {step}",
                    return_cells=True,
                )
            key = f"{self.prefix}/{method}"
            names += [f"{key}/concentration", f"{key}/mean"]
            values += [top_mass(maps).nanmean(), maps.mean()]
            change = self._change.update(method, maps)
            if change is not None:
                names.append(f"{key}/change")
                values.append(change)
        if explanation.activation is not None and self._writer.can_log_images:
            images["feature_maps"] = render_feature_maps(self._channels(explanation.activation), colormap=self.colormap)
        if correct is not None:
            names.append(f"{self.prefix}/probe_accuracy")
            labelled = targets >= 0 if targets.ndim == 1 else torch.ones_like(correct)
            values.append(correct[labelled.to(correct.device)].float().mean())  # unlabelled (-100) samples left out
        if self.quality:
            finite = {m: v for m, v in explanation.maps.items() if bool(torch.isfinite(v).all())}
            measured = quality_scalars(
                pl_module,
                self._device_probe.inputs,
                finite,
                explanation.target,
                metrics=self.quality,
                masks=self._device_masks,
                scores=HEAD_SCORES.get(self._head, "logits"),
                output=self.output,
                step=step,
                prefix=self.prefix,
            )
            names += list(measured)
            values += list(measured.values())
        host_values = torch.stack(values).cpu().tolist() if values else []
        scalars = {n: v for n, v in zip(names, host_values, strict=True) if v == v}  # drop NaN (undefined) values
        for method, image in images.items():
            metadata = None
            if method in cells:
                metadata = grid_metadata(method, step, image.shape, cells[method], samples)
            self._writer.image(f"{self.prefix}/{method}", image.cpu().numpy(), step, metadata=metadata)
        self._writer.scalars(scalars, step)

    def _scale_for(self, method: str, maps: Tensor) -> str | float:
        if self.color_scale == "per_image":
            return "per_image"
        if method not in self._fixed_scales:
            reference = float(torch.quantile(maps.float().flatten(), 0.99))
            if not reference > 0 or reference == float("inf"):
                return "per_image"  # an all-zero first map sets no scale; try again at the next event
            self._fixed_scales[method] = reference
        return self._fixed_scales[method]

    # ------------------------------------------------------------------------------ checkpoint
    def _extra_state(self) -> dict[str, Any]:
        return {"fixed_scales": dict(self._fixed_scales), "previous_ranks": self._change.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._fixed_scales = dict(state.get("fixed_scales", {}))
        ranks = dict(state.get("previous_ranks", {}))
        for method, maps in state.get("previous_maps", {}).items():  # checkpoints that kept whole maps, not ranks
            ranks.setdefault(method, map_ranks(maps))
        self._change.load_state_dict(ranks)
