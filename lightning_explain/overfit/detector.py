"""The rules that turn the overfitting signals of each event into alerts, with their evidence.

Pure Python over the numbers of one event (:class:`EventSignals`); no Lightning, no logging.
:class:`~lightning_explain.OverfitMonitor` feeds it and reports what it finds.

Two kinds of alert, each raised after its condition has held at ``patience`` events in a row:

- ``"overfitting"``: the validation probe's loss is significantly above its best (a paired t
  statistic over the same samples above ``min_significance``) while the training probe's loss
  is below where it was then and training accuracy has pulled further ahead of validation
  accuracy. Training still improves on the data it sees and is getting worse on data it does
  not: it memorises. The best event is picked on one half of the probe
  and the rise measured on the other half, both ways (:func:`cross_fitted_rise`): an event that
  was low by chance on the samples that picked it is not low by chance on the others, so noise
  around a plateau does not read as a rise.
- ``"shortcut"``: the model has learnt the training probe (its loss fell to under half its
  first value), and either its attribution on the training probe falls inside the regions of
  interest no more than ``max_mask_ratio`` times what their area would get by chance (with
  masks), or it explains training and validation inputs differently (``explanation_gap`` of at
  least ``min_explanation_gap``) while scoring much better on training inputs (an accuracy gap
  of at least ``min_accuracy_gap``).

An alert stays active until its condition has failed at ``patience`` events in a row; a later
return raises a new alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from lightning_explain.overfit.signals import paired_rise

ALERT_KINDS = ("overfitting", "shortcut")


class Alert(NamedTuple):
    """One alert: the step it was raised at, what was seen, and its kind (one of :data:`ALERT_KINDS`)."""

    step: int
    reason: str
    kind: str


@dataclass
class EventSignals:
    """The numbers of one event, on the host. Mask shares are ``None`` without masks."""

    step: int
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float
    val_losses: Tensor
    grad_alignment: float
    explanation_gap: float
    train_in_mask: float | None = None
    mask_area: float | None = None


ADVICE = {
    "overfitting": (
        "Try more data or augmentation, stronger regularisation (weight decay, dropout), a smaller model, or "
        "keep the checkpoint from before the rise (ModelCheckpoint(monitor='val_loss'))."
    ),
    "shortcut": (
        "Look at the training images for a cue that gives the class away (a marker, watermark, border or "
        "background); remove it, put it in every class at random, or augment it away (crops, cutout)."
    ),
}


class OverfitDetector:
    """Raise an :class:`Alert` when overfitting or a shortcut shows in consecutive events.

    Example:
        >>> detector = OverfitDetector(patience=2)
        >>> new_alerts = detector.update(signals)  # doctest: +SKIP
        >>> detector.active  # doctest: +SKIP
        {'overfitting'}
    """

    def __init__(
        self,
        *,
        patience: int = 2,
        min_significance: float = 3.0,
        max_mask_ratio: float = 1.25,
        min_explanation_gap: float = 0.1,
        min_accuracy_gap: float = 0.2,
    ) -> None:
        self.patience = patience
        self.min_significance = min_significance
        self.max_mask_ratio = max_mask_ratio
        self.min_explanation_gap = min_explanation_gap
        self.min_accuracy_gap = min_accuracy_gap
        self.first_train_loss: float | None = None
        self.best: dict[str, Any] | None = None  # the event with the lowest validation loss
        self.streaks = dict.fromkeys(ALERT_KINDS, 0)  # events in a row with the condition
        self.quiet = dict.fromkeys(ALERT_KINDS, 0)  # events in a row without it
        self.active: set[str] = set()
        self.half_best: list[dict[str, Any] | None] = [None, None]  # per half: its best mean, the other half then
        self.rise = float("nan")  # the last event's cross-fitted paired t statistic against the best event

    def reset(self) -> None:
        """Forget every event: the state of a new run, with the same rules."""
        self.__init__(
            patience=self.patience,
            min_significance=self.min_significance,
            max_mask_ratio=self.max_mask_ratio,
            min_explanation_gap=self.min_explanation_gap,
            min_accuracy_gap=self.min_accuracy_gap,
        )

    def update(self, signals: EventSignals) -> list[Alert]:
        """Take one event's signals; return the alerts raised at it (usually none)."""
        if self.first_train_loss is None:
            self.first_train_loss = signals.train_loss
        reasons = {"overfitting": self._overfitting(signals), "shortcut": self._shortcut(signals)}
        halves = _halves(signals.val_losses.detach().cpu())
        for h, reference in enumerate(self.half_best):
            mean = float(halves[h].mean()) if halves[h].numel() else float("nan")
            if reference is None or mean < reference["mean"]:
                self.half_best[h] = {"mean": mean, "other": halves[1 - h].clone()}
        if self.best is None or signals.val_loss < self.best["val_loss"]:
            self.best = {
                "step": signals.step,
                "val_loss": signals.val_loss,
                "train_loss": signals.train_loss,
                "accuracy_gap": signals.train_accuracy - signals.val_accuracy,
            }
        raised = []
        for kind, reason in reasons.items():
            self.streaks[kind] = self.streaks[kind] + 1 if reason else 0
            self.quiet[kind] = 0 if reason else self.quiet[kind] + 1
            if self.quiet[kind] >= self.patience:
                self.active.discard(kind)
            elif reason and self.streaks[kind] >= self.patience and kind not in self.active:
                self.active.add(kind)
                raised.append(Alert(signals.step, reason, kind))
        return raised

    def _overfitting(self, s: EventSignals) -> str | None:
        best = self.best
        self.rise = cross_fitted_rise(s.val_losses.cpu(), self.half_best)
        if best is None:
            return None
        accuracy_gap = s.train_accuracy - s.val_accuracy
        if not (
            self.rise > self.min_significance
            and s.train_loss < best["train_loss"]
            and accuracy_gap > best.get("accuracy_gap", float("-inf"))
        ):
            return None
        return (
            f"the model is memorising its training data: validation-probe loss rose from {best['val_loss']:.3g} "
            f"(step {best['step']}) to {s.val_loss:.3g} (paired t = {self.rise:.1f} over {s.val_losses.numel()} "
            f"samples, cross-fitted) while training-probe loss fell from {best['train_loss']:.3g} to "
            f"{s.train_loss:.3g}; accuracy {s.train_accuracy:.2f} on training vs {s.val_accuracy:.2f} on "
            f"validation; gradient alignment {s.grad_alignment:+.2f}."
        )

    def _shortcut(self, s: EventSignals) -> str | None:
        if self.first_train_loss is None or not s.train_loss < 0.5 * self.first_train_loss:
            return None  # nothing learnt yet: an untrained model looks everywhere
        learnt = f"the model has learnt the training probe (loss {s.train_loss:.3g}, accuracy {s.train_accuracy:.2f})"
        if s.train_in_mask is not None and s.mask_area:
            ratio = s.train_in_mask / s.mask_area
            if ratio <= self.max_mask_ratio:
                return (
                    f"shortcut: {learnt} but puts only {s.train_in_mask:.0%} of its saliency inside the regions "
                    f"of interest, which cover {s.mask_area:.0%} of the input ({ratio:.2f}× chance): it decides "
                    "from somewhere else."
                )
        accuracy_gap = s.train_accuracy - s.val_accuracy
        if s.explanation_gap >= self.min_explanation_gap and accuracy_gap >= self.min_accuracy_gap:
            return (
                f"possible shortcut: {learnt} and explains training inputs differently from validation inputs "
                f"(explanation gap {s.explanation_gap:.2f}: that share of its average saliency sits elsewhere) "
                f"while its accuracy is {s.train_accuracy:.2f} on training vs {s.val_accuracy:.2f} on "
                "validation: it may rely on a cue only the training data carry."
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs."""
        return {
            "first_train_loss": self.first_train_loss,
            "best": self.best,
            "half_best": list(self.half_best),
            "streaks": dict(self.streaks),
            "quiet": dict(self.quiet),
            "active": sorted(self.active),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.first_train_loss = state.get("first_train_loss")
        self.best = state.get("best")
        self.half_best = list(state.get("half_best", [None, None]))
        self.streaks.update(state.get("streaks", {}))
        self.quiet.update(state.get("quiet", {}))
        self.active = set(state.get("active", ()))


def _halves(losses: Tensor) -> tuple[Tensor, Tensor]:
    return losses[0::2], losses[1::2]


def cross_fitted_rise(losses: Tensor, half_best: list[dict[str, Any] | None]) -> float:
    """The paired t statistic of a rise since the best event, free of the bias of picking that event.

    ``half_best[h]`` holds, for the event where half ``h`` of the probe (even / odd samples) had
    its lowest mean loss, the losses of the *other* half then. Each half is tested against the
    event the other half picked, with :func:`~lightning_explain.overfit.signals.paired_rise`, and
    the two statistics are combined as ``(t0 + t1) / sqrt(2)``: about a standard normal when
    nothing changes. NaN before two events, or for a probe of fewer than 4 samples.
    """
    halves = _halves(losses)
    statistics = []
    for h, reference in enumerate(half_best):
        tested = halves[1 - h]
        if reference is None or reference["other"].shape != tested.shape or tested.numel() < 2:
            return float("nan")
        statistics.append(float(paired_rise(tested, reference["other"])))
    return (statistics[0] + statistics[1]) / 2**0.5


__all__ = ["ADVICE", "ALERT_KINDS", "Alert", "EventSignals", "OverfitDetector", "cross_fitted_rise"]
