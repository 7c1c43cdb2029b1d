"""FeatureExplainCallback: attributions of tabular and sequence probes in TensorBoard, during training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_explain._compat import MisconfigurationException
from lightning_explain.analysis.map_statistics import ChangeSeries, map_ranks, top_mass
from lightning_explain.attribution import compute_explanation, get_spec, registered
from lightning_explain.attribution._reduce import reduce_channels
from lightning_explain.attribution.feature_attribution import check_feature_inputs
from lightning_explain.callbacks._heads import detect_head, head_target, head_target_mode, sample_outcomes
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks._target_choice import check_target_choice
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import check_logits, record_outputs
from lightning_explain.core.targets import resolve_target
from lightning_explain.core.validation import check_int
from lightning_explain.render.signals import render_feature_bars, render_sequence_strips

KINDS = ("auto", "tabular", "sequence")
FeatureMethod = Callable[[Any, Tensor, Any], Tensor]


class FeatureExplainCallback(ScheduledProbeCallback):
    """Log per-feature (tabular) or per-time-step (sequence) attributions of a fixed probe batch.

    The counterpart of :class:`ExplainCallback` for inputs that are not images. At a baseline
    event before the first optimizer step, then every ``every_n_epochs`` epochs and/or
    ``every_n_steps`` steps, the probe is explained in eval mode without changing training and,
    at ``trainer.global_step``, ``key = {prefix}/{method}`` gets:

    - tabular probes (N, F): ``{key}/features`` (image), a bar chart of the ``top_k`` features by
      mean attribution over the probe; ``{key}/feature/{name}`` (scalars), the mean attribution
      of those ``top_k`` features;
    - sequence probes (N, T) or (N, T, D): ``{key}/sequences`` (image), per sample a line plot of
      the input above a heat strip of its attribution per time step; ``{key}/concentration``, the
      share of attribution in the top 10% of time steps;
    - both: ``{key}/values`` (histogram) of every attribution value; ``{key}/change`` = 1 − the
      Spearman rank correlation with the previous event's attributions (mean over the probe);
      ``{prefix}/probe_accuracy`` when the probe has labels and the head has classes.

    The model's head is found at fit start from its output for the probe, as :class:`ExplainCallback` finds it:
    class logits (N, K) are explained for a class (see ``target``), multi-hot targets of that shape for the
    sample's highest-scoring true label, and one output per sample, (N,) or (N, 1) (regression, with float or
    integer targets such as counts), for that output itself.

    A probe that is not 2-D or 3-D, or a method that cannot explain it (integer token ids for
    saliency), stops ``fit`` before the first step with a ``MisconfigurationException``.

    Args:
        probe: ``None`` = the first ``probe_size`` validation samples (else training samples), a
            tensor of inputs, or an ``(inputs, targets)`` pair.
        probe_size: how many samples to take when ``probe`` is None.
        method: the name of an input-space method, one of
            :func:`~lightning_explain.callbacks.feature_explain_callback.feature_methods`: ``"saliency"``
            (the default, :func:`~lightning_explain.attribution.feature_saliency`), ``"gradient_x_input"``,
            ``"integrated_gradients"``, ``"smoothgrad"``, ``"guided_backprop"``, with their default
            options; a sequence's feature dimension D reduced as the method reduces image channels), or
            a callable ``(model, inputs, target) -> (N, F) or (N, T)``.
        kind: ``"auto"`` (2-D probes are tabular, 3-D probes sequences), ``"tabular"`` or ``"sequence"``
            (a 2-D probe read as univariate sequences).
        feature_names: names of the F features (tabular); default ``f0``, ``f1``, ...
        top_k: how many features the bar chart and the scalars show.
        target: ``"label"``, ``"predicted"``, a class index, or ``None`` = the label when the probe
            has labels, else the prediction (a regression head explains its output: leave it ``None``).
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        every_n_epochs: log at the end of every this many epochs (``None`` = off).
        unpack_batch: turns a batch into ``(inputs, targets or None)``; see :class:`ExplainCallback`.
        output: the tensor of the model's output to read: ``None`` = a tensor as is, a dict's or ModelOutput's
            ``logits``, a tuple's first element; or a key, an index or a callable (see ``select_output``).
        prefix: the logging namespace.

    Example::

        trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[FeatureExplainCallback(feature_names=cols)])
    """

    _needs_images = True

    def __init__(
        self,
        *,
        probe: Any = None,
        probe_size: int = 64,
        method: str | FeatureMethod = "saliency",
        kind: Literal["auto", "tabular", "sequence"] = "auto",
        feature_names: Sequence[str] | None = None,
        top_k: int = 10,
        target: Literal["label", "predicted"] | int | None = None,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        output: OutputSpec = None,
        prefix: str = "explain",
    ) -> None:
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.output = check_output_spec(output)
        if not callable(method) and method not in feature_methods():
            raise ValueError(
                f"method must be one of {list(feature_methods())} (the input-space methods) or a callable "
                f"(model, inputs, target) -> maps, got {method!r}."
            )
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}.")
        if feature_names is not None and (isinstance(feature_names, str) or not len(feature_names)):
            raise ValueError("feature_names must be a non-empty sequence of names, one per feature.")
        check_int("top_k", top_k, low=1, expected="a positive int")
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.target = check_target_choice(target)
        self.method = method
        self.method_name = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
        self.kind = kind
        self.feature_names = None if feature_names is None else [str(n) for n in feature_names]
        self.top_k = top_k
        self.prefix = prefix
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self._kind = "tabular"
        self._head = "classification"
        self._target_mode: str | int = "predicted"
        self._change = ChangeSeries()

    def _state_key_fields(self) -> dict[str, Any]:
        return dict(
            method=self.method_name,
            kind=self.kind,
            target=self.target,
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            probe_size=self.probe_size,
            prefix=self.prefix,
        )

    _class_targets = False  # regression values and multi-label rows are kept for the head to read

    @property
    def head(self) -> str:
        """The model head found at fit start: ``"classification"``, ``"multilabel"``, ``"regression"`` or
        ``"segmentation"``."""
        return self._head

    # ----------------------------------------------------------------------------------- hooks
    def _check_probe(self, probe: Probe) -> None:
        shape = tuple(probe.inputs.shape)
        if probe.inputs.ndim not in (2, 3):
            raise MisconfigurationException(
                f"FeatureExplainCallback explains tabular inputs (N, F) or sequences (N, T) / (N, T, D); the probe "
                f"has shape {shape}. For images use ExplainCallback; for custom batches pass unpack_batch= or probe=."
            )
        if self.kind == "tabular" and probe.inputs.ndim == 3:
            raise MisconfigurationException(
                f"kind='tabular' needs a probe of shape (N, F); got {shape}. Use kind='sequence'."
            )
        self._kind = "sequence" if self.kind == "sequence" or probe.inputs.ndim == 3 else "tabular"
        if self._kind == "tabular" and self.feature_names is not None and len(self.feature_names) != shape[1]:
            raise MisconfigurationException(
                f"feature_names has {len(self.feature_names)} names, but the probe has {shape[1]} features."
            )

    def _dry_run(self, trainer: Any, pl_module: Any) -> tuple[Tensor, Tensor | None]:
        """Find the head from one forward pass, then explain the probe once: a bad output, target or method
        stops ``fit`` here."""
        probe = self._device_probe
        if isinstance(self.method, str):
            check_feature_inputs(probe.inputs)  # integer token ids have no input gradient: said before any forward
        raw, _ = record_outputs(pl_module, probe.inputs, {})
        logits = check_logits(raw, self.output)
        self._head = detect_head(logits, probe.targets, self.target, "FeatureExplainCallback")
        self._target_mode = head_target_mode("FeatureExplainCallback", self._head, self.target, probe.targets)
        maps, logits = self._compute(pl_module)
        expected = tuple(self._device_probe.inputs.shape[:2])
        if tuple(maps.shape) != expected:
            raise MisconfigurationException(
                f"method {self.method_name!r} returned maps of shape {tuple(maps.shape)}; expected {expected}."
            )
        return maps, logits

    def _log_event(self, pl_module: Any, result: tuple[Tensor, Tensor | None], step: int) -> None:
        self._log(*result, step)

    # ------------------------------------------------------------------------------- the event
    def _compute(self, pl_module: Any) -> tuple[Tensor, Tensor | None]:
        probe = self._device_probe
        target = head_target(self._target_mode, probe)
        if isinstance(self.method, str):  # one call gives the maps and the logits
            inputs = check_feature_inputs(probe.inputs)
            unreduced = {self.method: {"reduce": None}}  # the input's shape: the feature dimension D is reduced below
            raw = compute_explanation(
                pl_module, inputs, target, None, [self.method], options=unreduced, output=self.output
            )
            reduce = get_spec(self.method).defaults["reduce"]
            attribution = raw.maps[self.method]
            maps = reduce_channels(attribution.transpose(1, 2) if attribution.ndim == 3 else attribution, reduce)
            return maps, raw.logits
        maps = self.method(pl_module, probe.inputs, target).detach().float()
        logits = None
        if probe.targets is not None:
            raw_output, _ = record_outputs(pl_module, probe.inputs, {})
            logits = check_logits(raw_output, self.output).detach()
        return maps, logits

    def _log(self, maps: Tensor, logits: Tensor | None, step: int) -> None:
        if not bool(torch.isfinite(maps).all()):
            self._warn("nonfinite", f"{self.method_name} attributions hold NaN or inf at step {step}; not logged.")
            return
        key = f"{self.prefix}/{self.method_name}"
        names: list[str] = []
        values: list[Tensor] = []
        if self._kind == "tabular":
            importance = maps.mean(dim=0)
            top = importance.abs().topk(min(self.top_k, importance.numel())).indices
            feature_names = self.feature_names or [f"f{i}" for i in range(importance.numel())]
            names += [f"{key}/feature/{feature_names[i]}" for i in top.tolist()]
            values += list(importance[top])
        else:
            names.append(f"{key}/concentration")
            values.append(top_mass(maps).nanmean())
        change = self._change.update(self.method_name, maps)
        if change is not None:
            names.append(f"{key}/change")
            values.append(change)
        targets = self._device_probe.targets
        correct = None
        if logits is not None and targets is not None:
            _, correct = sample_outcomes(self._head, logits, targets, self._explained(logits))
        if correct is not None:  # a head with class labels
            names.append(f"{self.prefix}/probe_accuracy")
            labelled = targets >= 0 if targets.ndim == 1 else torch.ones_like(correct)
            values.append(correct[labelled.to(correct.device)].float().mean())  # unlabelled (-100) samples left out
        host = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=maps.device) for v in values]).cpu()
        scalars = {n: v for n, v in zip(names, host.tolist(), strict=True) if v == v}  # drop NaN (undefined)
        if self._writer.can_log_images:
            if self._kind == "tabular":
                image = render_feature_bars(maps, self.feature_names, self.top_k)
                self._writer.image(f"{key}/features", image.numpy(), step)
            else:
                image = render_sequence_strips(maps, self._device_probe.inputs)
                self._writer.image(f"{key}/sequences", image.numpy(), step)
            self._writer.histogram(f"{key}/values", maps.cpu().numpy(), step)
        self._writer.scalars(scalars, step)

    def _explained(self, logits: Tensor) -> Tensor | None:
        """The class each sample was explained for, where the head's outcome reads it (multi-label, segments)."""
        if self._head not in ("multilabel", "segmentation"):
            return None
        return resolve_target(logits, head_target(self._target_mode, self._device_probe)).index

    # ------------------------------------------------------------------------------ checkpoint
    def _extra_state(self) -> dict[str, Any]:
        return {"previous_ranks": self._change.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        ranks = dict(state.get("previous_ranks", {}))
        if state.get("previous") is not None:  # checkpoints that kept the last maps, not their ranks
            ranks.setdefault(self.method_name, map_ranks(state["previous"]))
        self._change.load_state_dict(ranks)


def feature_methods() -> tuple[str, ...]:
    """The registered methods :class:`FeatureExplainCallback` takes by name: those that attribute to the
    inputs themselves (no layer, not images only) and reduce over a channel dimension."""
    return tuple(
        spec.name
        for spec in registered()
        if not spec.needs_layer and not spec.needs_images and spec.output == "map" and "reduce" in spec.defaults
    )
