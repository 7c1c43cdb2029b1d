"""When a callback's events fire: a :class:`Schedule` of steps and epochs, and the callback that follows one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightning_explain.callbacks._base import ProbeEventCallback
from lightning_explain.core.validation import check_int


@dataclass(frozen=True)
class Schedule:
    """Every ``every_n_steps`` optimizer steps and at the end of every ``every_n_epochs`` epochs.

    ``None`` turns either off, in every callback; both off is a schedule that never fires
    (only the baseline event before the first step, where the callback has one). Validated
    when built, so a callback's ``__init__`` raises ``ValueError`` for a bad value.

    Example:
        >>> schedule = Schedule(every_n_steps=100, every_n_epochs=None)
        >>> schedule.step_due(200), schedule.epoch_end_due(0)
        (True, False)
    """

    every_n_steps: int | None = None
    every_n_epochs: int | None = None

    def __post_init__(self) -> None:
        check_int("every_n_steps", self.every_n_steps, low=1, none_ok=True, expected="a positive int")
        check_int("every_n_epochs", self.every_n_epochs, low=1, none_ok=True, expected="a positive int")

    @property
    def off(self) -> bool:
        """Whether neither steps nor epochs fire."""
        return self.every_n_steps is None and self.every_n_epochs is None

    def step_due(self, step: int) -> bool:
        """Whether the optimizer step count ``step`` (``trainer.global_step``) is an event."""
        return self.every_n_steps is not None and step % self.every_n_steps == 0

    def epoch_end_due(self, epoch: int) -> bool:
        """Whether the end of epoch ``epoch`` (``trainer.current_epoch``, from 0) is an event."""
        return self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0


class ScheduledProbeCallback(ProbeEventCallback):
    """A :class:`~lightning_explain.callbacks._base.ProbeEventCallback` whose events follow a :class:`Schedule`.

    Subclasses set ``self.schedule`` in ``__init__`` (``every_n_steps`` and ``every_n_epochs`` read
    it) and implement :meth:`~lightning_explain.callbacks._base.ProbeEventCallback._compute` and
    :meth:`~lightning_explain.callbacks._base.ProbeEventCallback._log_event`. Steps without an event
    cost one modulo check. After each scheduled event, on every rank, :meth:`_after_event` runs
    (the place for a collective such as a stop decision: the event itself runs on rank zero only).

    ``every_n_steps`` counts ``trainer.global_step``, which advances once per optimizer step: a
    LightningModule that steps two optimizers per batch (a GAN under manual optimisation) advances
    it by two per batch, so ``every_n_steps=1`` fires on even steps only, once per batch, and
    ``every_n_steps=k`` every ``k / 2`` batches.
    """

    schedule: Schedule = Schedule()

    @property
    def every_n_steps(self) -> int | None:
        """Events every this many optimizer steps (``None`` = off)."""
        return self.schedule.every_n_steps

    @every_n_steps.setter
    def every_n_steps(self, value: int | None) -> None:
        self.schedule = Schedule(every_n_steps=value, every_n_epochs=self.schedule.every_n_epochs)

    @property
    def every_n_epochs(self) -> int | None:
        """Events at the end of every this many epochs (``None`` = off)."""
        return self.schedule.every_n_epochs

    @every_n_epochs.setter
    def every_n_epochs(self, value: int | None) -> None:
        self.schedule = Schedule(every_n_steps=self.schedule.every_n_steps, every_n_epochs=value)

    def _scheduled_event(self, trainer: Any, pl_module: Any) -> None:
        self._event(trainer, lambda step: self._log_event(pl_module, self._compute(pl_module), step))
        self._after_event(trainer)

    def _after_event(self, trainer: Any) -> None:
        """Runs on every rank after each scheduled event (whether or not this rank computed it)."""

    def _after_train_batch(self, trainer: Any, pl_module: Any) -> None:
        if self.schedule.step_due(trainer.global_step):
            self._scheduled_event(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """An event at the end of every ``every_n_epochs`` epochs."""
        if self.schedule.epoch_end_due(trainer.current_epoch):
            self._scheduled_event(trainer, pl_module)
