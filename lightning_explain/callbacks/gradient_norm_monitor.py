"""GradientNormMonitor: per-layer gradient norms as scalars (and, optionally, a histogram)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException
from lightning_explain.analysis.gradient_norms import grouped_norms, parameter_owners, probe_loss_gradients
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.compiled import named_eager_modules
from lightning_explain.core.losses import LossFn
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.validation import is_number

SOURCES = ("train", "probe")
MIN_EVENTS = 3
"""Fewer events than this in a run gives a one-time note at fit start: a curve needs points."""


class GradientNormMonitor(ScheduledProbeCallback):
    """Log the gradient norm of every layer (a module that owns parameters) and their total.

    Per event, at ``trainer.global_step``: ``{prefix}/{source}/{layer}-{type}`` scalars (the
    module's name and its class, e.g. ``grad_norm/train/features.0.0-Conv2d``) and
    ``{prefix}/{source}/total``; with ``log_histogram=True`` also a ``{prefix}/{source}/layers``
    histogram of the per-layer norms. Layers without a gradient at that step (frozen, unused)
    are left out.

    Events: the first optimizer step (step 0), then the last optimizer step of every
    ``every_n_epochs`` epochs and/or every ``every_n_steps`` steps; when both fire at one step,
    one event. A run that will log fewer than three events gets a one-time note at fit start.

    Args:
        source: ``"train"``: the real training gradients, read in ``on_before_optimizer_step``
            (after gradient accumulation; under AMP the norms are of the unscaled gradients, also
            for optimizers such as fused Adam that unscale inside ``step``; steps whose gradients
            hold NaN or inf, which the AMP scaler skips, are not logged). ``"probe"``: gradients of
            ``loss_fn`` on a fixed probe batch, in eval mode, computed without touching ``.grad``
            (at step 0 before any training, at the end of every ``every_n_epochs`` epochs and
            every ``every_n_steps`` steps, like :class:`ExplainCallback`).
        every_n_epochs: log at the last optimizer step of every this many epochs (``None`` = off).
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        norm_type: the p of the p-norm (``float("inf")`` for the max norm).
        probe: for ``source="probe"``: ``None`` = the first ``probe_size`` validation samples
            (else training samples), or an ``(inputs, targets)`` pair.
        probe_size: how many samples when ``probe`` is None.
        loss_fn: for ``source="probe"``: ``loss_fn(logits, targets) -> per-sample losses (N,)``, the
            package's one loss convention (:data:`~lightning_explain.core.LossFn`; a loss reduced to a
            0-d tensor is accepted too); their mean is differentiated. Cross-entropy by default.
        unpack_batch: turns a batch into ``(inputs, targets)``; see :class:`ExplainCallback`.
        log_histogram: whether to log a histogram of the per-layer norms at each event (one value
            per layer, so it is readable only for models with many layers; off by default).
        output: the tensor of the model's output to read: ``None`` = a tensor as is, a dict's or ModelOutput's
            ``logits``, a tuple's first element; or a key, an index or a callable (see ``select_output``).
        prefix: the logging namespace.

    Example::

        trainer = Trainer(callbacks=[GradientNormMonitor(every_n_steps=10)])
    """

    def __init__(
        self,
        *,
        source: Literal["train", "probe"] = "train",
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        norm_type: float = 2.0,
        probe: Any = None,
        probe_size: int = 32,
        loss_fn: LossFn | None = None,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        log_histogram: bool = False,
        output: OutputSpec = None,
        prefix: str = "grad_norm",
    ) -> None:
        self._class_targets = loss_fn is None  # a loss of your own may take any targets (regression values)
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}.")
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        if not is_number(norm_type) or not norm_type > 0:
            raise ValueError(f"norm_type must be a positive number or float('inf'), got {norm_type!r}.")
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (logits, targets) -> per-sample losses, got {loss_fn!r}.")
        if source == "train" and probe is not None:
            raise ValueError("probe= is only used with source='probe'; drop it or set source='probe'.")
        self.output = check_output_spec(output)
        self.source = source
        self.norm_type = float(norm_type)
        self.loss_fn = loss_fn
        self.log_histogram = log_histogram
        self.prefix = prefix
        self._layer_names: list[str] = []
        self._layer_tags: list[str] = []  # "<name>-<module class>": what the scalar tags carry
        self._owner: dict[nn.Parameter, int] = {}

    def _state_key_fields(self) -> dict[str, Any]:
        return dict(
            source=self.source,
            every_n_epochs=self.every_n_epochs,
            every_n_steps=self.every_n_steps,
            norm_type=self.norm_type,
            probe_size=self.probe_size,
            prefix=self.prefix,
        )

    # ----------------------------------------------------------------------------------- hooks
    @property
    def _start_runs_model(self) -> bool:  # type: ignore[override]
        return self.source == "probe"

    @property
    def _uses_probe(self) -> bool:  # type: ignore[override]
        return self.source == "probe"

    def _setup_run(self, trainer: Any, pl_module: Any) -> None:
        self._layer_names, self._owner = parameter_owners(pl_module)
        modules = dict(named_eager_modules(pl_module))
        self._layer_tags = [f"{name}-{type(modules.get(name, pl_module)).__name__}" for name in self._layer_names]
        self._note_few_events(trainer)

    def _check_probe(self, probe: Probe) -> None:
        if probe.targets is None:
            raise MisconfigurationException(
                "GradientNormMonitor(source='probe') needs a probe with targets for its loss, but the probe has "
                "none. Pass probe=(inputs, targets), or unpack_batch= that returns targets. Targets that are not "
                "class indices (regression values, masks) are kept only with a loss for them: pass loss_fn= as well "
                "(e.g. loss_fn=lambda y_hat, y: F.mse_loss(y_hat, y, reduction='none').flatten(1).mean(1))."
            )

    def _dry_run(self, trainer: Any, pl_module: Any) -> tuple[list[Tensor], list[int]] | None:
        """The probe gradients once (a bad loss or probe stops ``fit`` here); nothing for ``source="train"``."""
        return self._compute(pl_module) if self.source == "probe" else None

    def _baseline_wanted(self, trainer: Any) -> bool:
        return self.source == "probe" and self._baseline_due(trainer)  # "train" logs step 0 before its update

    def _compute(self, pl_module: Any) -> tuple[list[Tensor], list[int]]:
        return self._probe_gradients(pl_module)

    def _log_event(self, pl_module: Any, result: tuple[list[Tensor], list[int]], step: int) -> None:
        self._log(*result, step)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.source == "train" and self._train_step_due(trainer):
            self._event(trainer, lambda step: self._log_train(trainer, optimizer, step))

    def _after_train_batch(self, trainer: Any, pl_module: Any) -> None:
        if self.source == "probe":
            super()._after_train_batch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """With ``source="probe"``, an event at the end of every ``every_n_epochs`` epochs."""
        if self.source == "probe":
            super().on_train_epoch_end(trainer, pl_module)

    # ---------------------------------------------------------------------------- the schedule
    def _train_step_due(self, trainer: Any) -> bool:
        """Whether the optimizer step about to run (``source="train"``) is an event."""
        step = trainer.global_step
        if step == 0 or self.schedule.step_due(step):
            return True
        if not self.schedule.epoch_end_due(trainer.current_epoch):
            return False
        progress = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "batch_progress", None)
        return bool(getattr(progress, "is_last_batch", False))  # the epoch's last optimizer step

    def _note_few_events(self, trainer: Any) -> None:
        """Say once, at fit start, when the run will log fewer than :data:`MIN_EVENTS` events."""
        steps = _planned_event_steps(
            trainer, every_n_epochs=self.every_n_epochs, every_n_steps=self.every_n_steps, after=self.source == "probe"
        )
        if steps is not None and len(steps) < MIN_EVENTS:
            shown = ", ".join(map(str, sorted(steps)))
            self._warn(
                "few-events",
                f"this run will log gradient norms at only {len(steps)} step(s) ({shown}), too few for a curve. "
                "Set every_n_steps= (e.g. every_n_steps=1) for more points.",
            )

    # ------------------------------------------------------------------------------- the event
    def _train_gradients(self, optimizer: Any) -> tuple[list[Tensor], list[int]]:
        grads, groups = [], []
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None and parameter in self._owner:
                    grads.append(parameter.grad)
                    groups.append(self._owner[parameter])
        return grads, groups

    def _log_train(self, trainer: Any, optimizer: Any, step: int) -> None:
        grads, groups = self._train_gradients(optimizer)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        # Lightning unscales AMP gradients before this hook, except for optimizers that unscale
        # inside their own step (e.g. fused Adam): their gradients are still multiplied by the scale.
        still_scaled = scaler is not None and scaler.is_enabled() and _unscales_in_step(optimizer)
        self._log(grads, groups, step, divide_by=scaler.get_scale() if still_scaled else 1.0, scaler=scaler)

    def _probe_gradients(self, pl_module: Any) -> tuple[list[Tensor], list[int]]:
        parameters = [p for p in self._owner if p.requires_grad]
        probe = self._device_probe
        grads = probe_loss_gradients(
            pl_module, probe.inputs, probe.targets, parameters, self.loss_fn, output=self.output
        )
        kept = [(g, self._owner[p]) for p, g in zip(parameters, grads, strict=True) if g is not None]
        return [g for g, _ in kept], [i for _, i in kept]

    def _log(
        self, grads: Sequence[Tensor], groups: Sequence[int], step: int, divide_by: float = 1.0, scaler: Any = None
    ) -> None:
        if not grads:
            return
        layer_norms, total = grouped_norms(grads, groups, len(self._layer_names), self.norm_type)
        present = sorted(set(groups))
        values = torch.cat([layer_norms[present], total[None]]).cpu() / divide_by  # the one host transfer
        host = values.tolist()  # Python floats at once: indexing a tensor per value costs microseconds each
        if not math.isfinite(host[-1]):
            if scaler is not None:
                self._warn(
                    "amp-skipped",
                    f"gradients hold NaN or inf at step {step}, so the AMP grad scaler skips this optimizer step "
                    "(normal while the loss scale calibrates); such steps are not logged as norms.",
                )
            else:
                self._warn("nonfinite", f"gradients hold NaN or inf at step {step}; their norms are not logged.")
            return
        key = f"{self.prefix}/{self.source}"
        scalars = {f"{key}/{self._layer_tags[i]}": v for i, v in zip(present, host[:-1], strict=True)}
        scalars[f"{key}/total"] = host[-1]
        self._writer.scalars(scalars, step)
        if self.log_histogram:
            self._writer.histogram(f"{key}/layers", values[:-1].numpy(), step)


def _unscales_in_step(optimizer: Any) -> bool:
    """Whether ``optimizer`` unscales AMP gradients inside its own ``step`` (Lightning then skips ``unscale_``)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # Lightning may wrap it
    return bool(getattr(inner, "_step_supports_amp_scaling", False))


def _planned_event_steps(
    trainer: Any, *, every_n_epochs: int | None, every_n_steps: int | None, after: bool
) -> set[int] | None:
    """The steps a run will log at, from its planned length; ``None`` when the length is unknown or long.

    ``after``: events come after the optimizer step (``source="probe"``: step k+1 ends epoch k's
    last step) rather than before it (``source="train"``: step k is read before the k+1-th update).
    """
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # noqa: BLE001 - e.g. a dataloader without a length: nothing to predict
        return None
    epochs = getattr(trainer, "max_epochs", None)
    if not isinstance(total, int) and not (isinstance(total, float) and math.isfinite(total)):
        return None
    total = int(total)
    if total > 10_000:
        return None  # long enough for any schedule that logs at all to give several points
    steps = {0}
    if every_n_steps:
        steps.update(range(every_n_steps, total + (1 if after else 0), every_n_steps))
    if every_n_epochs and epochs and epochs > 0 and total:
        per_epoch = total / epochs
        for epoch in range(every_n_epochs, epochs + 1, every_n_epochs):
            end = min(total, round(epoch * per_epoch))
            steps.add(end if after else end - 1)
    return steps
