"""OverfitMonitor: tells you, during the run, that the model memorises or has found a shortcut."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_explain._compat import MisconfigurationException, rank_zero_warn
from lightning_explain.callbacks._overfit_probes import check_mask_shape, check_masks, labelled_probe
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks.probe import Probe, check_probe_argument
from lightning_explain.core.losses import LossFn
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.validation import check_int, check_number
from lightning_explain.overfit.detector import ADVICE, Alert, EventSignals, OverfitDetector
from lightning_explain.overfit.signals import ProbeReading, compare_probes, read_probe
from lightning_explain.render.grids import render_explanation_grid


class OverfitMonitor(ScheduledProbeCallback):
    """Watch a training probe and a validation probe; alert when the model memorises or takes a shortcut.

    At a baseline event before the first step, then every ``every_n_epochs`` epochs and/or
    ``every_n_steps`` steps, both probes go through the model in eval mode (training is not
    changed), and the callback logs under ``prefix``:

    - ``train_loss``, ``val_loss``, ``loss_gap`` (val − train); ``train_accuracy``, ``val_accuracy``,
      ``accuracy_gap`` (train − val);
    - ``train_grad_norm``, ``val_grad_norm``: the norms of the loss gradients;
    - ``grad_alignment``: the cosine of the two loss gradients; below 0, a step that lowers the
      training loss raises the validation loss;
    - ``explanation_drift``: 1 − Spearman correlation of the validation probe's saliency maps with
      the previous event's (0 = the model looks at the same places);
    - ``explanation_gap``: how differently the model explains training and validation inputs (the
      total variation distance of their mean saliency maps, 0 to 1);
    - with ``masks``: ``train_in_mask``, ``val_in_mask`` (share of saliency inside the regions of
      interest) and ``train_mask_area``, ``val_mask_area`` (their share of the input);
    - ``val_loss_rise``: paired t statistic of the validation-probe loss against its best event;
    - ``alert``: 1 while an alert is active, else 0;
    - images ``train_saliency`` and ``val_saliency``: the first ``image_samples`` samples of each probe
      beside their saliency maps, a strip green where predicted right and red where wrong.

    The rules are in :class:`~lightning_explain.overfit.detector.OverfitDetector`. Each new alert is
    added to :attr:`alerts` and shown as a warning with its evidence and what to try; with
    ``stop_on_alert=True`` it also stops training (on every rank, like ``EarlyStopping``). A run resumed
    from a checkpoint keeps its alerts but is not stopped again for one raised before the checkpoint.

    Args:
        every_n_epochs: an event at the end of every this many epochs (``None`` = off).
        every_n_steps: an event every this many optimizer steps (``None`` = off).
        patience: how many events in a row a condition must hold before it raises an alert.
        stop_on_alert: set ``trainer.should_stop`` when an alert is raised.
        masks: regions of interest: ``{"train": masks, "val": masks}`` (either key may be left out),
            each a bool tensor with one mask per probe sample, in the probe's order, shaped like the
            probe's maps: (N, H, W) (or (N, 1, H, W)) for images, the input's shape for other data.
        train_probe: ``(inputs, targets)``; ``None`` = the first ``probe_size`` samples of the
            training dataset (read without drawing random numbers, so the shuffling is unchanged).
        val_probe: ``(inputs, targets)``; ``None`` = the first ``probe_size`` validation samples.
        probe_size: how many samples per probe when it is not given. The test for a rising validation
            loss gains power with the square root of it; passes go 64 samples at a time, so a large probe
            costs time, not memory.
        loss_fn: ``loss_fn(logits, targets) -> per-sample losses (N,)``, the package's one loss
            convention (:data:`~lightning_explain.core.LossFn`); cross-entropy by default. A loss that
            returns one reduced value stops ``fit`` at the start (pass ``reduction="none"``).
        unpack_batch: turns a batch into ``(inputs, targets)``; see :class:`ExplainCallback`.
        image_samples: how many samples of each probe to draw (0 = no images).
        min_significance: the paired t statistic above which the validation loss counts as risen.
        max_mask_ratio: with masks, the share of saliency inside the regions, relative to their area,
            at or below which a model that has learnt its training probe is said to look elsewhere.
        min_explanation_gap: without masks, the explanation gap that, with ``min_accuracy_gap``,
            suggests a shortcut.
        min_accuracy_gap: see ``min_explanation_gap``.
        output: the tensor of the model's output to read: ``None`` = a tensor as is, a dict's or ModelOutput's
            ``logits``, a tuple's first element; or a key, an index or a callable (see ``select_output``).
        prefix: the logging namespace.

    Example::

        monitor = OverfitMonitor(stop_on_alert=True)
        trainer = Trainer(max_epochs=100, callbacks=[monitor])
        trainer.fit(model, datamodule=dm)
        for alert in monitor.alerts:
            print(alert.step, alert.reason)
    """

    _needs_images = True
    _probe_argument = "val_probe"

    def __init__(
        self,
        *,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        patience: int = 2,
        stop_on_alert: bool = False,
        masks: Mapping[str, Tensor] | None = None,
        train_probe: Any = None,
        val_probe: Any = None,
        probe_size: int = 512,
        loss_fn: LossFn | None = None,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        image_samples: int = 8,
        min_significance: float = 3.0,
        max_mask_ratio: float = 1.25,
        min_explanation_gap: float = 0.1,
        min_accuracy_gap: float = 0.2,
        output: OutputSpec = None,
        prefix: str = "overfit",
    ) -> None:
        super().__init__(probe=val_probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.output = check_output_spec(output)
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if self.schedule.off:
            raise ValueError("OverfitMonitor needs a schedule: set every_n_epochs and/or every_n_steps.")
        check_int("patience", patience, low=1, expected="a positive int")
        if not isinstance(stop_on_alert, bool):
            raise ValueError(f"stop_on_alert must be True or False, got {stop_on_alert!r}.")
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (logits, targets) -> per-sample losses, got {loss_fn!r}.")
        check_int("image_samples", image_samples, low=0)
        thresholds = dict(
            min_significance=min_significance,
            max_mask_ratio=max_mask_ratio,
            min_explanation_gap=min_explanation_gap,
            min_accuracy_gap=min_accuracy_gap,
        )
        for name, value in thresholds.items():
            check_number(name, value, low=0)
        self.patience = patience
        self.stop_on_alert = stop_on_alert
        self.masks = check_masks(masks)
        self._user_train_probe = check_probe_argument(train_probe, name="train_probe")
        self.loss_fn = loss_fn
        self.image_samples = image_samples
        self.prefix = prefix
        self.detector = OverfitDetector(patience=patience, **{name: float(v) for name, v in thresholds.items()})
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self.detector.reset()
        self._alerts: list[Alert] = []
        self._train_probe: Probe | None = None
        self._device_train_probe: Probe | None = None
        self._device_masks: dict[str, Tensor] = {}
        self._parameters: list[Tensor] = []
        self._previous_ranks: Tensor | None = None
        self._stop_requested = False

    def _state_key_fields(self) -> dict[str, Any]:
        return dict(
            every_n_epochs=self.every_n_epochs,
            every_n_steps=self.every_n_steps,
            probe_size=self.probe_size,
            prefix=self.prefix,
        )

    @property
    def alerts(self) -> list[Alert]:
        """Every alert raised so far, in order: ``Alert(step, reason, kind)``, ``kind`` one of
        ``"overfitting"`` and ``"shortcut"``. Restored from checkpoints."""
        return self._alerts

    @property
    def train_probe(self) -> Probe | None:
        """The fixed training probe on the training device, once training has started."""
        return self._device_train_probe

    # ----------------------------------------------------------------------------------- hooks
    def _probe_sources(self) -> list[str]:
        return [
            source
            for source, given, kept in (
                ("val", self._user_probe, self._probe),
                ("train", self._user_train_probe, self._train_probe),
            )
            if given is None and kept is None
        ]

    def _probes_for_message(self) -> dict[str, Probe | None]:
        return {"train_probe": self._device_train_probe, "val_probe": self._device_probe}

    def _choose_probes(self, trainer: Any, pl_module: Any) -> Probe:
        """Both probes, chosen once per series (or kept from the checkpoint), on the model."""
        if self._probe is None:
            self._probe = self._choose_probe(trainer, "val", self._user_probe)
        else:
            self._check_kept_probe(self._user_probe, self._probe, "val_probe=")
        if self._train_probe is None:
            self._train_probe = self._choose_probe(trainer, "train", self._user_train_probe)
        else:
            self._check_kept_probe(self._user_train_probe, self._train_probe, "train_probe=")
        self._device_probe = self._on_model(self._probe, pl_module)
        self._device_train_probe = self._on_model(self._train_probe, pl_module)
        return self._device_probe

    def _setup_run(self, trainer: Any, pl_module: Any) -> None:
        self._parameters = [p for p in pl_module.parameters() if p.requires_grad]
        if not self._parameters:
            raise MisconfigurationException("OverfitMonitor needs a model with trainable parameters.")

    def _dry_run(self, trainer: Any, pl_module: Any) -> dict[str, ProbeReading]:
        """Both probes through the model once, the masks checked against their maps: the baseline's readings."""
        readings = self._compute(pl_module)
        self._device_masks = {name: check_mask_shape(self.masks[name], name, readings[name]) for name in self.masks}
        return readings

    def _compute(self, pl_module: Any) -> dict[str, ProbeReading]:
        return self._read(pl_module)

    def _after_event(self, trainer: Any) -> None:
        """Every rank takes part (events run on rank zero only); a stop on one rank alone would hang DDP."""
        if self.stop_on_alert:
            if trainer.strategy.reduce_boolean_decision(self._stop_requested, all=False):
                trainer.should_stop = True

    # ------------------------------------------------------------------------------- the event
    def _choose_probe(self, trainer: Any, source: str, given: Probe | None) -> Probe:
        if given is None:
            try:
                given = self._take_probe(trainer, source)
            except ValueError as error:
                raise MisconfigurationException(
                    f"{error} (its {source} probe). Give the trainer "
                    f"{'validation' if source == 'val' else 'training'} data, or pass {source}_probe=(inputs, targets)."
                ) from error
        return labelled_probe(given, source, has_masks=source in self.masks)

    def _read(self, pl_module: Any) -> dict[str, ProbeReading]:
        probes = {"train": self._device_train_probe, "val": self._device_probe}
        return {
            name: read_probe(pl_module, probe.inputs, probe.targets, self._parameters, self.loss_fn, output=self.output)
            for name, probe in probes.items()
        }

    def _log_event(self, pl_module: Any, readings: dict[str, ProbeReading], step: int) -> None:
        train, val = readings["train"], readings["val"]
        values, ranks = compare_probes(train, val, self._device_masks, self._previous_ranks)
        maps_ok = ranks is not None
        if maps_ok:
            self._previous_ranks = ranks
        elif train.maps is not None:
            self._warn("nonfinite-maps", f"saliency maps hold NaN or inf at step {step}; map signals not logged.")
        device = train.loss.device
        host_values = torch.stack([v.float().to(device) for v in values.values()]).cpu().tolist()  # one transfer
        host = dict(zip(values, host_values, strict=True))
        if not all(host[k] == host[k] and abs(host[k]) != float("inf") for k in ("train_loss", "val_loss")):
            self._warn("nonfinite-loss", f"the probe losses are NaN or inf at step {step}; the event is skipped.")
            return
        signals = EventSignals(
            step=step,
            train_loss=host["train_loss"],
            val_loss=host["val_loss"],
            train_accuracy=host["train_accuracy"],
            val_accuracy=host["val_accuracy"],
            val_losses=val.losses.cpu(),
            grad_alignment=host["grad_alignment"],
            explanation_gap=host.get("explanation_gap", float("nan")),
            train_in_mask=host.get("train_in_mask"),
            mask_area=host.get("train_mask_area"),
        )
        for alert in self.detector.update(signals):
            self._alerts.append(alert)
            self._stop_requested = self._stop_requested or self.stop_on_alert
            stopping = " Stopping training (stop_on_alert=True)." if self.stop_on_alert else ""
            rank_zero_warn(f"OverfitMonitor alert at step {alert.step}: {alert.reason} {ADVICE[alert.kind]}{stopping}")
        host["val_loss_rise"] = self.detector.rise
        host["alert"] = float(bool(self.detector.active))
        self._writer.scalars({f"{self.prefix}/{k}": v for k, v in host.items() if v == v}, step)  # NaN: undefined
        images = self._device_train_probe.inputs.ndim == 4  # the grids are of images (N, C, H, W)
        if maps_ok and self.image_samples and images and self._writer.can_log_images:
            self._log_images(readings, step)

    def _log_images(self, readings: dict[str, ProbeReading], step: int) -> None:
        probes = {"train": self._device_train_probe, "val": self._device_probe}
        for name, probe in probes.items():
            k = self.image_samples
            reading = readings[name]
            labels = None if probe.targets is None else [f"LABEL {t}" for t in probe.targets[:k].tolist()]
            title = f"{name} probe saliency  step {step}"
            maps, correct = reading.maps[:k], reading.correct[:k]
            image = render_explanation_grid(probe.inputs[:k], maps, correct=correct, labels=labels, title=title)
            self._writer.image(f"{self.prefix}/{name}_saliency", image.cpu().numpy(), step)

    # ------------------------------------------------------------------------------ checkpoint
    def _extra_state(self) -> dict[str, Any]:
        probe = self._train_probe
        return {
            "train_probe_inputs": None if probe is None else probe.inputs,
            "train_probe_targets": None if probe is None else probe.targets,
            "detector": self.detector.state_dict(),
            "alerts": [tuple(alert) for alert in self.alerts],
            "previous_ranks": None if self._previous_ranks is None else self._previous_ranks.cpu(),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("train_probe_inputs") is not None:
            self._train_probe = Probe(state["train_probe_inputs"], state.get("train_probe_targets"))
        self.detector.load_state_dict(state.get("detector", {}))
        self._alerts = [Alert(*alert) for alert in state.get("alerts", [])]
        self._previous_ranks = state.get("previous_ranks")
