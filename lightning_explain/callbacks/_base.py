"""What the callbacks share: argument checks, the probe, one event per step, fault isolation."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lightning_explain._compat import CALLBACK_BASES, MisconfigurationException
from lightning_explain.callbacks._fit_start import FitStartChecks
from lightning_explain.callbacks._log_writer import LogWriter, WarnOnce
from lightning_explain.callbacks.probe import Probe, UnpackBatch, check_probe_argument
from lightning_explain.core.rng import preserved_global_rng
from lightning_explain.core.validation import check_int

SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy", "XLAFSDPStrategy")
"""Strategies that shard parameters across ranks; the callbacks refuse them at setup."""


def check_strategy(trainer: Any, owner: str) -> None:
    """Raise at setup for a strategy that shards parameters (FSDP, DeepSpeed, model parallel).

    Events run on global rank zero only. With sharded parameters a forward pass on one rank
    would need the other ranks to gather their shards: a collective on one rank only, which
    hangs. Data-parallel strategies (DDP and its variants) keep whole replicas and work.
    """
    strategy = getattr(trainer, "strategy", None)
    names = {cls.__name__ for cls in type(strategy).__mro__}
    sharded = names.intersection(SHARDED_STRATEGIES)
    if sharded:
        raise MisconfigurationException(
            f"{owner} does not support {sorted(sharded)[0]}: it explains the model on global rank zero only, and "
            "sharded parameters would need all ranks to take part. Use strategy='ddp' (or another data-parallel "
            f"strategy), or remove {owner} from the callbacks for sharded runs."
        )


class ProbeEventCallback(FitStartChecks, *CALLBACK_BASES):
    """A callback that computes something on a fixed probe batch at scheduled steps.

    It is a ``Callback`` of ``lightning.pytorch`` and, when installed, of ``pytorch_lightning``, so
    either namespace's Trainer (and ``LightningCLI``) accepts it.

    :meth:`_start` is a template (set-up, probe, dry run, baseline event): subclasses fill in its
    steps, implement :meth:`_compute` and :meth:`_log_event`, keep their own checkpoint state in
    :meth:`_extra_state`, and call :meth:`_event` when their schedule fires (or inherit
    :class:`~lightning_explain.callbacks._schedule.ScheduledProbeCallback`). Events are
    deduplicated by ``trainer.global_step`` (two schedules firing at one step give one event), run
    on global rank zero only, and after fit start a failure inside an event is a warning: the
    event is skipped and training goes on. Every event and the start leave the global random
    streams where they found them.

    The start runs in ``on_train_start``, except: with a probe to take from an iterable training
    loader, in ``on_train_batch_start`` of the first batch, from that batch (iterating the loader
    again would advance the dataset's own random stream); with lazy modules not yet materialised,
    after the first training step (materialising them earlier would draw their initial weights
    at another point of the random stream than a run without the callbacks).

    A new ``fit`` (another trainer) starts a fresh series: the probe taken again (unless given
    as ``probe=``), the layer resolved again, a baseline event; ``fit`` continued on the same
    trainer and a resume from a checkpoint keep the series.
    """

    def __init__(self, *, probe: Any, probe_size: int, unpack_batch: UnpackBatch | None) -> None:
        check_int("probe_size", probe_size, low=1, expected="a positive int")
        if unpack_batch is not None and not callable(unpack_batch):
            raise ValueError(f"unpack_batch must be callable (batch -> (inputs, targets)), got {unpack_batch!r}.")
        self._user_probe = check_probe_argument(probe, class_targets=self._class_targets, name=self._probe_argument)
        self.probe_size = probe_size
        self.unpack_batch = unpack_batch
        self._writer: LogWriter | None = None
        self._state_key: str | None = None
        self._fit_trainer: Callable[[], Any] = lambda: None  # a weak reference to the last fit's trainer
        self._fitted = False
        ProbeEventCallback._reset_series(self)

    _class_targets = True
    """Whether probe targets must be class indices (else any tensor with one row per sample)."""

    _probe_argument = "probe"
    """The name of the constructor argument that gives the probe, for messages."""

    def _reset_series(self) -> None:
        """Forget the last fit's series: what a new fit (not a resume) starts without. Subclasses extend it."""
        self._probe: Probe | None = None  # on the CPU: what state_dict saves
        self._device_probe: Probe | None = None
        self._last_event_step: int | None = None
        self._warn = WarnOnce(type(self).__name__)
        self._start_pending = False
        self._deferred = False
        self._first_batch: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fit_trainer"] = None  # a weak reference cannot be pickled; set again at the next setup
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fit_trainer = lambda: None

    @property
    def state_key(self) -> str:
        """Unique per configuration, so several instances keep separate state in one checkpoint.

        Built from :meth:`_state_key_fields` once (the configuration does not change after
        ``__init__``): Lightning reads it at every hook call.
        """
        if self._state_key is None:
            self._state_key = self._generate_state_key(**self._state_key_fields())
        return self._state_key

    def _state_key_fields(self) -> dict[str, Any]:
        """The arguments that tell this instance's series apart from another instance's."""
        return {}

    @property
    def probe(self) -> Probe | None:
        """The fixed probe batch on the training device, once training has started."""
        return self._device_probe

    _needs_images = False
    """Whether the callback logs images (then a warning names the loggers that cannot take them)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Check the strategy and the loggers when ``fit`` starts; raise before any training step.

        A ``fit`` on another trainer than the last one starts a fresh series (a checkpoint, when
        resuming, is loaded after this and restores its series).
        """
        if stage == "fit":
            check_strategy(trainer, type(self).__name__)
            if self._fit_trainer() is not trainer:
                if self._fitted:  # the first fit starts from __init__'s state
                    self._reset_series()
                self._fit_trainer, self._fitted = weakref.ref(trainer), True
            self._writer = LogWriter.for_trainer(trainer, type(self).__name__, needs_images=self._needs_images)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Write the images still pending (before Lightning closes the loggers) and stop the writer's thread."""
        if self._writer is not None:
            self._writer.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Another part of the run raised: write what is pending before Lightning closes the loggers."""
        if self._writer is not None:
            self._writer.close()

    # ------------------------------------------------------------------------------------ start
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Start now, or at the first batch (see the class docstring); bad configuration stops ``fit`` here."""
        self._start_pending = True
        self._first_batch = None
        self._try_start(trainer, pl_module, after_step=False)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Keep the first batch when the probe is to come from it, and start if nothing else waits."""
        if self._start_pending:
            self._first_batch = batch
            self._try_start(trainer, pl_module, after_step=False)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Start if still waiting (lazy modules are materialised now), then :meth:`_after_train_batch`."""
        if self._start_pending:
            self._try_start(trainer, pl_module, after_step=True)
        self._after_train_batch(trainer, pl_module)

    def _after_train_batch(self, trainer: Any, pl_module: Any) -> None:
        """What the callback does after each training batch (its schedule)."""

    _start_runs_model = True
    """Whether :meth:`_start` runs the model (then it waits for lazy modules to be materialised)."""

    def _probe_sources(self) -> list[str]:
        """The sources (``"auto"``, ``"train"``, ``"val"``) of the probes to take from the data at the start."""
        return ["auto"] if self._uses_probe and self._user_probe is None and self._probe is None else []

    def _try_start(self, trainer: Any, pl_module: Any, *, after_step: bool) -> None:
        if not after_step:
            if self._first_batch is None and self._needs_first_batch(trainer):
                return
            if self._start_runs_model and _has_lazy_parameters(pl_module):
                return
        self._start_pending = False
        self._deferred = trainer.global_step > 0 and after_step
        with preserved_global_rng():
            self._checked_start(trainer, pl_module)
        self._first_batch = None

    # ------------------------------------------------------------------------- the start template
    def _start(self, trainer: Any, pl_module: Any) -> None:
        """Fit start, in four steps that subclasses fill in; any of them raising stops ``fit`` here.

        1. :meth:`_setup_run`: what the run needs besides a probe (layer names, parameters);
        2. :meth:`_choose_probes` (when :attr:`_uses_probe`), then :meth:`_check_probe`;
        3. :meth:`_dry_run`: the first computation, under ``torch.no_grad()``, so bad configuration
           fails before the first training step;
        4. the baseline event, when :meth:`_baseline_wanted`: its result logged by :meth:`_log_event`.
        """
        self._setup_run(trainer, pl_module)
        if self._uses_probe:
            self._check_probe(self._choose_probes(trainer, pl_module))
        with torch.no_grad():
            result = self._dry_run(trainer, pl_module)
        if self._baseline_wanted(trainer):
            self._event(trainer, lambda step: self._log_event(pl_module, result, step))

    @property
    def _uses_probe(self) -> bool:
        """Whether this configuration explains a probe batch (else no probe is taken)."""
        return True

    def _setup_run(self, trainer: Any, pl_module: Any) -> None:
        """Step 1 of :meth:`_start`: prepare what the run needs besides the probe."""

    def _choose_probes(self, trainer: Any, pl_module: Any) -> Probe:
        """Step 2 of :meth:`_start`: choose the probe once per series and move it to the model."""
        return self._prepare_probe(trainer, pl_module)

    def _check_probe(self, probe: Probe) -> None:
        """Step 2 of :meth:`_start`: raise ``MisconfigurationException`` for a probe this callback cannot use."""

    def _dry_run(self, trainer: Any, pl_module: Any) -> Any:
        """Step 3 of :meth:`_start`: the first computation; its result is the baseline event's."""
        return self._compute(pl_module)

    def _baseline_wanted(self, trainer: Any) -> bool:
        """Step 4 of :meth:`_start`: whether to log the dry run as the baseline event (see :meth:`_baseline_due`)."""
        return self._baseline_due(trainer)

    def _compute(self, pl_module: Any) -> Any:
        """What one event computes on the probe (on rank zero, under ``torch.no_grad()``)."""
        raise NotImplementedError

    def _log_event(self, pl_module: Any, result: Any, step: int) -> None:
        """Log one event's result at ``step``."""
        raise NotImplementedError

    def _baseline_due(self, trainer: Any) -> bool:
        """Whether the start logs a baseline event: a new series, at step 0 (or after the first step with
        lazy modules)."""
        return self._last_event_step is None and (trainer.global_step == 0 or self._deferred)

    # ------------------------------------------------------------------------------------ events
    def _event(self, trainer: Any, run: Callable[[int], None]) -> None:
        """Run ``run(step)`` once for this global step, on rank zero, never raising into training."""
        step = trainer.global_step
        if step == self._last_event_step:
            return
        self._last_event_step = step
        if not trainer.is_global_zero:
            return
        try:
            with torch.no_grad(), preserved_global_rng():
                run(step)
        except Exception as error:  # noqa: BLE001 - an explanation must never stop training
            self._warn(
                type(error).__name__,
                f"skipped the event at step {step} after {type(error).__name__}: {error}. Training continues; "
                "later events are tried again (this warning is shown once per kind of error).",
            )

    # ------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """The series: the last event's step, the probe (so a resumed run explains the same samples) and
        :meth:`_extra_state`."""
        probe = self._probe
        state = {
            "last_event_step": self._last_event_step,
            "probe_inputs": None if probe is None else probe.inputs,
            "probe_targets": None if probe is None else probe.targets,
            "probe_forward_kwargs": {} if probe is None else dict(probe.forward_kwargs),
        }
        return {**state, **self._extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the series saved by :meth:`state_dict`."""
        self._last_event_step = state_dict.get("last_event_step")
        if state_dict.get("probe_inputs") is not None:
            kwargs = dict(state_dict.get("probe_forward_kwargs") or {})
            self._probe = Probe(state_dict["probe_inputs"], state_dict.get("probe_targets"), kwargs)
        self._load_extra_state(state_dict)

    def _extra_state(self) -> dict[str, Any]:
        """A subclass's own part of the checkpoint (tensors on the CPU)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved (missing keys: a checkpoint from before they existed)."""


def _has_lazy_parameters(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())
