"""Tests for lightning_explain.overfit.detector: the alert rules, on hand-built event sequences."""

from __future__ import annotations

import io
import math

import pytest
import torch
from stats_by_hand import paired_t

from lightning_explain.overfit.detector import ALERT_KINDS, Alert, EventSignals, OverfitDetector, cross_fitted_rise

N = 64  # samples in the validation probe


def _signals(
    step: int,
    train_loss: float,
    val_losses: torch.Tensor,
    *,
    train_accuracy: float = 0.9,
    val_accuracy: float = 0.85,
    explanation_gap: float = 0.0,
    train_in_mask: float | None = None,
    mask_area: float | None = None,
) -> EventSignals:
    return EventSignals(
        step=step,
        train_loss=train_loss,
        val_loss=float(val_losses.double().mean()),
        train_accuracy=train_accuracy,
        val_accuracy=val_accuracy,
        val_losses=val_losses,
        grad_alignment=0.1,
        explanation_gap=explanation_gap,
        train_in_mask=train_in_mask,
        mask_area=mask_area,
    )


def _jitter(seed: int, std: float) -> torch.Tensor:
    """Zero-mean noise over the probe with sample standard deviation exactly ``std``."""
    z = torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean()
    return (z / z.std() * std).float()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _by_hand_rise(history: list[list[float]], current: list[float]) -> float:
    """The cross-fitted rise, from scratch: ``history`` holds the per-sample losses of the earlier events.

    Split the samples into even and odd positions. For each half, find the earliest event where that half's mean was
    lowest; test the *other* half now against the other half at that event (paired t); combine the two as
    (t0 + t1) / sqrt(2).
    """
    if not history:
        return math.nan
    halves = [list(range(0, len(current), 2)), list(range(1, len(current), 2))]
    statistics = []
    for h in (0, 1):
        means = [_mean([losses[i] for i in halves[h]]) for losses in history]
        picked = history[means.index(min(means))]
        other = halves[1 - h]
        statistics.append(paired_t([current[i] for i in other], [picked[i] for i in other]))
    return (statistics[0] + statistics[1]) / math.sqrt(2)


def _by_hand_conditions(events: list[EventSignals], min_significance: float) -> list[tuple[float, bool]]:
    """Per event: the by-hand cross-fitted rise and whether the overfitting condition holds.

    The condition: the rise exceeds ``min_significance``, the training loss is below that of the earlier event with
    the lowest validation loss, and the accuracy gap (train − val) is larger than it was at that event.
    """
    history: list[list[float]] = []
    best: EventSignals | None = None
    result = []
    for event in events:
        rise = _by_hand_rise(history, event.val_losses.tolist())
        holds = (
            best is not None
            and rise > min_significance
            and event.train_loss < best.train_loss
            and event.train_accuracy - event.val_accuracy > best.train_accuracy - best.val_accuracy
        )
        result.append((rise, holds))
        history.append(event.val_losses.tolist())
        if best is None or event.val_loss < best.val_loss:
            best = event
    return result


def _by_hand_first_alert(events: list[EventSignals], patience: int, min_significance: float) -> int | None:
    """The index of the event where the condition has first held ``patience`` events in a row."""
    streak = 0
    for k, (_, holds) in enumerate(_by_hand_conditions(events, min_significance)):
        streak = streak + 1 if holds else 0
        if streak == patience:
            return k
    return None


def _run(detector: OverfitDetector, events: list[EventSignals]) -> list[list[Alert]]:
    return [detector.update(event) for event in events]


def _alerts(raised: list[list[Alert]]) -> list[tuple[int, str]]:
    return [(alert.step, alert.kind) for batch in raised for alert in batch]


BASE = 1.0 + torch.rand(N, generator=torch.Generator().manual_seed(123))
FALLING = 5  # events 0..4: validation loss falls, best at event 4
RISES = [0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15]  # against the best, with jitter of std 0.05


def _overfitting_events(train_rises: bool = False, accuracies: str = "train-pulls-ahead") -> list[EventSignals]:
    """Validation loss falls for FALLING events, then rises broadly; the training loss falls throughout (or rises).

    With a jitter of standard deviation 0.05 over 64 samples the standard error is 0.05 / 8 = 0.00625, so the
    rising events have paired t statistics of about 1.6, 4.8, 8, 11.2, ... against the best event (each half alone
    about 1 / sqrt(2) of that; the cross-fitted sum of both about the same again).

    Accuracies (dyadic, so the gaps compare exactly): 0.75 on training and 0.5 on validation while the validation
    loss falls; in the rise, ``"train-pulls-ahead"``: training accuracy climbs by 1/64 an event; ``"val-falls"``:
    validation accuracy drops by 1/64 an event; ``"both-climb"``: both climb by 1/64 (the gap stays 0.25);
    ``"constant"``: nothing changes.
    """
    events = []
    for k in range(FALLING):
        val_losses = BASE - 0.1 * k + _jitter(k, 0.05)
        events.append(_signals(10 * k, 1.0 - 0.1 * k, val_losses, train_accuracy=0.75, val_accuracy=0.5))
    best = events[-1].val_losses
    for j, rise in enumerate(RISES):
        k = FALLING + j
        train_loss = 1.0 - 0.1 * (FALLING - 1) + (0.1 * (j + 1) if train_rises else -0.02 * (j + 1))
        climb = (j + 1) / 64
        train_accuracy, val_accuracy = {
            "train-pulls-ahead": (0.75 + climb, 0.5),
            "val-falls": (0.75, 0.5 - climb),
            "both-climb": (0.75 + climb, 0.5 + climb),
            "constant": (0.75, 0.5),
        }[accuracies]
        val_losses = best + rise + _jitter(100 + j, 0.05)
        events.append(
            _signals(10 * k, train_loss, val_losses, train_accuracy=train_accuracy, val_accuracy=val_accuracy)
        )
    return events


# --- Alert ------------------------------------------------------------------------------------------------------------


def test_alert_is_a_named_tuple_of_step_reason_kind():
    alert = Alert(3, "why", "shortcut")
    assert Alert._fields == ("step", "reason", "kind")
    assert isinstance(alert, tuple)
    assert alert == (3, "why", "shortcut")
    assert (alert.step, alert.reason, alert.kind) == (3, "why", "shortcut")
    assert set(ALERT_KINDS) == {"overfitting", "shortcut"}


# --- cross_fitted_rise ------------------------------------------------------------------------------------------------


def _half_best_by_hand(history: list[list[float]]) -> list[dict]:
    """``half_best`` as documented: per half, its lowest mean and the other half's losses at that event."""
    references = []
    for h in (0, 1):
        means = [_mean(losses[h::2]) for losses in history]
        picked = history[means.index(min(means))]
        references.append({"mean": min(means), "other": torch.tensor(picked[1 - h :: 2])})
    return references


@pytest.mark.parametrize("n", [4, 11, 64])
def test_cross_fitted_rise_equals_the_by_hand_statistic(n):
    generator = torch.Generator().manual_seed(n)
    history = [(1.0 + torch.rand(n, generator=generator)).tolist() for _ in range(6)]
    current = (1.05 + torch.rand(n, generator=generator)).tolist()
    half_best = _half_best_by_hand(history)
    expected = _by_hand_rise(history, current)
    assert math.isfinite(expected)
    assert cross_fitted_rise(torch.tensor(current), half_best) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_cross_fitted_rise_tests_each_half_against_the_event_the_other_half_picked():
    # even samples are lowest at event 0, odd samples at event 1: the odd half is tested against event 0 and the even
    # half against event 1; the naive pairings (each half against its own best, or both against one event) differ
    ramp = [0.1 * i for i in range(8)]
    event0 = [1.0 + r if i % 2 == 0 else 2.0 + r for i, r in enumerate(ramp)]
    event1 = [2.0 + r * r if i % 2 == 0 else 1.0 + r * r for i, r in enumerate(ramp)]
    current = [1.5 + (-1) ** i * 0.01 * i for i in range(8)]
    half_best = _half_best_by_hand([event0, event1])
    assert half_best[0]["other"].tolist() == pytest.approx(event0[1::2])  # even half picked event 0
    assert half_best[1]["other"].tolist() == pytest.approx(event1[0::2])  # odd half picked event 1
    t_odd = paired_t(current[1::2], event0[1::2])
    t_even = paired_t(current[0::2], event1[0::2])
    got = cross_fitted_rise(torch.tensor(current), half_best)
    assert got == pytest.approx((t_odd + t_even) / math.sqrt(2), rel=1e-4)
    own_best = (paired_t(current[0::2], event0[0::2]) + paired_t(current[1::2], event1[1::2])) / math.sqrt(2)
    assert abs(got - own_best) > 1


def test_cross_fitted_rise_is_nan_without_references_or_for_tiny_or_mismatched_probes():
    four = torch.tensor([1.0, 2.0, 3.0, 4.0])
    references = _half_best_by_hand([[0.5, 1.5, 2.25, 3.0]])
    assert math.isfinite(cross_fitted_rise(four, references))
    assert math.isnan(cross_fitted_rise(four, [None, None]))
    assert math.isnan(cross_fitted_rise(four, [references[0], None]))
    assert math.isnan(cross_fitted_rise(four, [None, references[1]]))
    assert math.isnan(cross_fitted_rise(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), references))  # other size
    three = torch.tensor([1.0, 2.0, 3.0])
    assert math.isnan(cross_fitted_rise(three, _half_best_by_hand([[0.5, 1.0, 2.0]])))  # an odd half of one sample


def test_cross_fitted_rise_is_plus_infinity_for_a_uniform_shift_of_both_halves():
    reference = [1.0, 1.5, 0.75, 2.0, 1.25, 0.5]  # dyadic: the shifts are exact
    half_best = _half_best_by_hand([reference])
    assert cross_fitted_rise(torch.tensor([v + 0.25 for v in reference]), half_best) == math.inf
    assert cross_fitted_rise(torch.tensor([v - 0.25 for v in reference]), half_best) == -math.inf


def test_detector_half_best_and_rise_follow_the_by_hand_computation_event_by_event():
    # a random walk: the two halves reach their lowest means at different events, so the references differ
    generator = torch.Generator().manual_seed(7)
    losses = BASE.clone()
    detector = OverfitDetector()
    history: list[list[float]] = []
    picked_differently = False
    for k in range(30):
        losses = losses + 0.02 * torch.randn(N, generator=generator)
        detector.update(_signals(k, 1.0, losses))
        expected_rise = _by_hand_rise(history, losses.tolist())
        if k == 0:
            assert math.isnan(detector.rise) and math.isnan(expected_rise)
        else:
            assert detector.rise == pytest.approx(expected_rise, rel=1e-4, abs=1e-4), f"event {k}"
        history.append(losses.tolist())
        expected = _half_best_by_hand(history)
        for h in (0, 1):
            assert detector.half_best[h]["mean"] == pytest.approx(expected[h]["mean"], rel=1e-6)
            torch.testing.assert_close(detector.half_best[h]["other"], expected[h]["other"])
        even_best = [_mean(v[0::2]) for v in history].index(expected[0]["mean"])
        odd_best = [_mean(v[1::2]) for v in history].index(expected[1]["mean"])
        picked_differently = picked_differently or even_best != odd_best
    assert picked_differently


def test_best_keeps_step_losses_and_accuracy_gap_of_the_lowest_validation_loss_event():
    detector = OverfitDetector()
    events = [
        _signals(0, 1.0, BASE + 0.2, train_accuracy=0.5, val_accuracy=0.5),
        _signals(5, 0.8, BASE - 0.1, train_accuracy=0.75, val_accuracy=0.5),
        _signals(9, 0.6, BASE + 0.1, train_accuracy=1.0, val_accuracy=0.25),
    ]
    _run(detector, events)
    assert detector.best == {
        "step": 5,
        "val_loss": events[1].val_loss,
        "train_loss": 0.8,
        "accuracy_gap": 0.25,
    }


# --- overfitting ------------------------------------------------------------------------------------------------------


def test_designed_rise_has_the_intended_paired_t_statistics():
    events = _overfitting_events()
    best = events[FALLING - 1].val_losses.tolist()
    t = [paired_t(event.val_losses.tolist(), best) for event in events[FALLING:]]
    for got, rise in zip(t, RISES, strict=True):
        assert got == pytest.approx(rise / (0.05 / math.sqrt(N)), rel=1e-3)
    assert t[0] < 2.5 < t[1] < t[2]
    # the cross-fitted statistic sees the same rise: below the threshold at the first rising event, above after
    rises = [rise for rise, _ in _by_hand_conditions(events, 2.5)][FALLING:]
    assert rises[0] < 2.5 < 4 < rises[1] < rises[2] < rises[3]


@pytest.mark.parametrize("accuracies", ["train-pulls-ahead", "val-falls"])
def test_overfitting_alert_raised_at_second_significant_rising_event_with_patience_two(accuracies):
    events = _overfitting_events(accuracies=accuracies)
    detector = OverfitDetector(patience=2, min_significance=2.5)
    conditions = _by_hand_conditions(events, 2.5)
    raised = []
    for k, event in enumerate(events):
        raised.append(detector.update(event))
        expected_rise = conditions[k][0]
        if k == 0:
            assert math.isnan(detector.rise) and math.isnan(expected_rise)
        else:
            assert detector.rise == pytest.approx(expected_rise, rel=1e-4), f"event {k}"
        if k < FALLING:
            assert raised[k] == [] and detector.active == set(), f"alert during the falling phase at event {k}"
            assert not detector.rise > 0  # falling: NaN at the first event, then negative
    holds = [k for k, (_, condition) in enumerate(conditions) if condition]
    assert holds == list(range(FALLING + 1, len(events)))  # significant from the second rising event on
    expected_index = _by_hand_first_alert(events, patience=2, min_significance=2.5)
    assert expected_index == FALLING + 2  # the rise must hold for two events: the second significant one
    assert _alerts(raised) == [(events[expected_index].step, "overfitting")]
    assert raised[expected_index][0].kind == "overfitting"
    assert detector.active == {"overfitting"}


def test_overfitting_alert_with_patience_three_waits_one_more_event():
    events = _overfitting_events()
    expected_index = _by_hand_first_alert(events, patience=3, min_significance=2.5)
    assert expected_index == FALLING + 3
    assert _alerts(_run(OverfitDetector(patience=3), events)) == [(events[expected_index].step, "overfitting")]


def test_overfitting_alert_respects_min_significance():
    events = _overfitting_events()
    # t is about 1.6, 4.8, 8, 11.2, 14.4, ...: with a threshold of 10 the 4th and 5th rising events qualify
    expected_index = _by_hand_first_alert(events, patience=2, min_significance=10)
    assert expected_index == FALLING + 4
    alerts = _alerts(_run(OverfitDetector(patience=2, min_significance=10), events))
    assert alerts == [(events[expected_index].step, "overfitting")]


def test_overfitting_reason_mentions_the_best_event_and_the_numbers():
    events = _overfitting_events()
    (alert,) = [alert for batch in _run(OverfitDetector(patience=2), events) for alert in batch]
    best = events[FALLING - 1]
    current = events[FALLING + 2]
    rise = _by_hand_conditions(events, 2.5)[FALLING + 2][0]
    assert isinstance(alert.reason, str) and alert.reason
    assert f"step {best.step}" in alert.reason
    assert f"{best.val_loss:.3g}" in alert.reason
    assert f"{current.val_loss:.3g}" in alert.reason
    assert f"paired t = {rise:.1f} over {N} samples, cross-fitted" in alert.reason
    assert f"accuracy {current.train_accuracy:.2f} on training vs {current.val_accuracy:.2f}" in alert.reason


@pytest.mark.parametrize("accuracies", ["constant", "both-climb"])
def test_no_overfitting_alert_for_the_same_rise_without_a_widening_accuracy_gap(accuracies):
    events = _overfitting_events(accuracies=accuracies)
    detector = OverfitDetector(patience=2)
    raised = _run(detector, events)
    assert _alerts(raised) == []
    assert detector.active == set()
    # everything else holds: the rise is significant and the training loss below its value at the best event
    best = events[FALLING - 1]
    for k, (rise, _) in enumerate(_by_hand_conditions(events, 2.5)[FALLING + 1 :], start=FALLING + 1):
        assert rise > 2.5 and events[k].train_loss < best.train_loss
    assert detector.rise > 10
    # and with the gap widening by a single 1/64 at the last two events, the alert comes at the last one
    widened = events[:-2] + [
        _signals(
            e.step, e.train_loss, e.val_losses, train_accuracy=e.train_accuracy + 1 / 64, val_accuracy=e.val_accuracy
        )
        for e in events[-2:]
    ]
    assert _alerts(_run(OverfitDetector(patience=2), widened)) == [(widened[-1].step, "overfitting")]


def test_no_overfitting_alert_when_training_loss_rises_too():
    detector = OverfitDetector(patience=2)
    raised = _run(detector, _overfitting_events(train_rises=True))
    assert all(batch == [] for batch in raised)
    assert detector.active == set()
    assert detector.rise > 10  # the validation rise itself is seen


def _plateau_alerts(seed: int, train_trend: float, events: int = 50) -> list[tuple[int, str, float]]:
    """Per-sample validation losses that jitter around constants, independently at each event; training loss jitters
    too, flat or creeping down (``train_trend`` per event). Training accuracy creeps up by 1/128 an event, so the
    accuracy gap is wider than at any earlier event: only the rise statistic and the training loss can keep the
    detector quiet (with a constant gap this test could not fail). Returns the alerts as (step, kind, rise)."""
    generator = torch.Generator().manual_seed(seed)
    train_base = 0.5 + 0.5 * torch.rand(N, generator=generator)
    detector = OverfitDetector()  # the defaults
    alerts = []
    for k in range(events):
        train_losses = train_base + 0.05 * torch.randn(N, generator=generator)
        val_losses = BASE + 0.05 * torch.randn(N, generator=generator)
        signals = _signals(
            k, float(train_losses.mean()) + train_trend * k, val_losses, train_accuracy=0.5 + k / 128, val_accuracy=0.25
        )
        alerts += [(alert.step, alert.kind, round(detector.rise, 2)) for alert in detector.update(signals)]
    return alerts


@pytest.mark.parametrize("train_trend", [0.0, -0.002], ids=["train-plateau", "train-still-falling"])
def test_no_alert_on_a_noisy_validation_plateau_over_fifty_events(train_trend):
    # The validation loss does not rise. Twenty seeds, because one seed can hide a false-alarm rate: the detector
    # must stay quiet on every one of them.
    alerted = {}
    for seed in range(20):
        alerts = _plateau_alerts(seed, train_trend)
        if alerts:
            alerted[seed] = alerts
    assert alerted == {}, f"false alarms (step, kind, rise) on a pure-noise plateau for {len(alerted)} of 20 seeds"


def test_cross_fitting_removes_the_bias_of_testing_against_the_lowest_event():
    # On the same plateau the cross-fitted statistic averages about 0, while a paired t of the whole probe against
    # the single earlier event with the lowest mean is biased upwards: that event was low partly by chance, on the
    # very samples it is tested on.
    cross_fitted, naive = [], []
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        detector = OverfitDetector()
        history: list[list[float]] = []
        for k in range(50):
            val_losses = BASE + 0.05 * torch.randn(N, generator=generator)
            detector.update(_signals(k, 1.0, val_losses))
            current = val_losses.tolist()
            if k == 0:
                assert math.isnan(detector.rise)
            else:
                cross_fitted.append(detector.rise)
                lowest = min(history, key=_mean)
                naive.append(paired_t(current, lowest))
            history.append(current)
    assert len(cross_fitted) == len(naive) == 20 * 49
    assert all(math.isfinite(t) for t in cross_fitted)
    assert abs(_mean(cross_fitted)) < 0.3
    assert _mean(naive) > 0.8


# --- shortcut with masks ----------------------------------------------------------------------------------------------

FLAT = BASE.clone()  # validation losses that never change: no overfitting signal


def test_shortcut_alert_with_masks_after_patience_events():
    detector = OverfitDetector(patience=2, max_mask_ratio=1.25)
    events = [_signals(0, 1.0, FLAT, train_in_mask=0.2, mask_area=0.2)]
    events += [_signals(k, 0.4, FLAT, train_in_mask=0.1, mask_area=0.2) for k in range(1, 10)]  # ratio 0.5
    raised = _run(detector, events)
    assert raised[1] == []
    alerts = [alert for batch in raised for alert in batch]
    assert [(alert.step, alert.kind) for alert in alerts] == [(2, "shortcut")]
    assert detector.active == {"shortcut"}
    assert "10%" in alerts[0].reason and "20%" in alerts[0].reason and "0.50" in alerts[0].reason


def test_shortcut_alert_with_masks_at_ratio_exactly_max_mask_ratio():
    detector = OverfitDetector(patience=2, max_mask_ratio=1.25)
    events = [_signals(0, 1.0, FLAT)] + [
        _signals(k, 0.1, FLAT, train_in_mask=0.625, mask_area=0.5) for k in range(1, 4)
    ]
    alerts = [alert for batch in _run(detector, events) for alert in batch]
    assert [(alert.step, alert.kind) for alert in alerts] == [(2, "shortcut")]


@pytest.mark.parametrize("train_loss", [1.0, 0.8, 0.5])
def test_no_shortcut_alert_before_training_loss_falls_below_half_its_first_value(train_loss):
    detector = OverfitDetector(patience=2)
    events = [_signals(0, 1.0, FLAT, train_in_mask=0.1, mask_area=0.2)]
    events += [_signals(k, train_loss, FLAT, train_in_mask=0.1, mask_area=0.2) for k in range(1, 12)]
    assert all(batch == [] for batch in _run(detector, events))
    assert detector.active == set()
    # once it does fall below half, the same maps give the alert after `patience` events
    later = [_signals(k, 0.49, FLAT, train_in_mask=0.1, mask_area=0.2) for k in range(12, 15)]
    alerts = [alert for batch in _run(detector, later) for alert in batch]
    assert [(alert.step, alert.kind) for alert in alerts] == [(13, "shortcut")]


def test_no_shortcut_alert_when_attribution_sits_in_the_masks():
    detector = OverfitDetector(patience=2, max_mask_ratio=1.25)
    events = [_signals(0, 1.0, FLAT)] + [
        _signals(k, 0.1, FLAT, train_in_mask=0.6, mask_area=0.2)
        for k in range(1, 20)  # 3x chance
    ]
    assert all(batch == [] for batch in _run(detector, events))


# --- shortcut without masks -------------------------------------------------------------------------------------------


def _gap_events(gap: float, train_accuracy: float, val_accuracy: float, count: int = 10) -> list[EventSignals]:
    first = _signals(0, 1.0, FLAT, train_accuracy=0.25, val_accuracy=0.25)
    return [first] + [
        _signals(k, 0.2, FLAT, explanation_gap=gap, train_accuracy=train_accuracy, val_accuracy=val_accuracy)
        for k in range(1, count)
    ]


def test_shortcut_alert_without_masks_from_explanation_and_accuracy_gaps():
    detector = OverfitDetector(patience=2, min_explanation_gap=0.1, min_accuracy_gap=0.2)
    alerts = [alert for batch in _run(detector, _gap_events(0.3, 1.0, 0.5)) for alert in batch]
    assert [(alert.step, alert.kind) for alert in alerts] == [(2, "shortcut")]
    assert "0.30" in alerts[0].reason and "1.00" in alerts[0].reason and "0.50" in alerts[0].reason


def test_shortcut_alert_without_masks_at_the_thresholds():
    detector = OverfitDetector(patience=2, min_explanation_gap=0.25, min_accuracy_gap=0.5)
    alerts = [alert for batch in _run(detector, _gap_events(0.25, 0.75, 0.25)) for alert in batch]
    assert [alert.step for alert in alerts] == [2]


@pytest.mark.parametrize(
    ("gap", "train_accuracy", "val_accuracy"),
    [(0.3, 0.9, 0.85), (0.05, 1.0, 0.5), (0.0, 1.0, 0.25)],
    ids=["explanation-gap-only", "accuracy-gap-only", "accuracy-gap-no-explanation-gap"],
)
def test_no_shortcut_alert_without_masks_when_only_one_gap_is_large(gap, train_accuracy, val_accuracy):
    detector = OverfitDetector(patience=2, min_explanation_gap=0.1, min_accuracy_gap=0.2)
    assert all(batch == [] for batch in _run(detector, _gap_events(gap, train_accuracy, val_accuracy, 20)))


def test_shortcut_gap_rule_applies_when_masks_look_fine():
    detector = OverfitDetector(patience=2)
    first = _signals(0, 1.0, FLAT)
    rest = [
        _signals(
            k, 0.2, FLAT, explanation_gap=0.4, train_accuracy=1.0, val_accuracy=0.4, train_in_mask=0.9, mask_area=0.2
        )
        for k in range(1, 4)
    ]
    alerts = [alert for batch in _run(detector, [first, *rest]) for alert in batch]
    assert [(alert.step, alert.kind) for alert in alerts] == [(2, "shortcut")]


# --- alert lifetime ---------------------------------------------------------------------------------------------------


def test_alert_raised_once_while_condition_persists_then_cleared_and_raised_again():
    on = {"explanation_gap": 0.4, "train_accuracy": 1.0, "val_accuracy": 0.4}
    off = {"explanation_gap": 0.0, "train_accuracy": 1.0, "val_accuracy": 0.95}
    pattern = ["off"] + ["on"] * 8 + ["off"] + ["on"] * 2 + ["off"] * 2 + ["on"] * 3
    detector = OverfitDetector(patience=2)
    raised, active = [], []
    for k, state in enumerate(pattern):
        train_loss = 1.0 if k == 0 else 0.2
        raised.append(detector.update(_signals(k, train_loss, FLAT, **(on if state == "on" else off))))
        active.append("shortcut" in detector.active)
    alerts = [alert for batch in raised for alert in batch]
    # on at 1..8: raised at 2 only; off at 9 (one event) keeps it active; on at 10, 11: no new alert;
    # off at 12, 13 (patience events) clears it at 13; on again at 14, 15: a new alert at 15
    assert [(alert.step, alert.kind) for alert in alerts] == [(2, "shortcut"), (15, "shortcut")]
    assert active == [False, False] + [True] * 11 + [False, False, True, True]


# --- state_dict -------------------------------------------------------------------------------------------------------


def _mixed_events() -> list[EventSignals]:
    """Overfitting that comes, goes and returns, and a shortcut that does the same, over 24 events.

    The accuracy gap grows by 1/64 an event on top of 1/16 (no shortcut) or 1/2 (shortcut): it widens within each
    phase, as overfitting needs, and the shortcut's gap is at least ``min_accuracy_gap``.
    """
    events = []
    val = BASE.clone()
    val_steps = [-0.1, -0.1, -0.1, 0.05, 0.05, 0.05, -0.5, -0.1, 0.04, 0.05, 0.05, 0.05]
    val_steps += [0.0] * 12
    shortcut = [False] * 6 + [True] * 5 + [False] * 3 + [True] * 4 + [False] * 2 + [True] * 4
    for k in range(24):
        val = val + val_steps[k] + _jitter(200 + k, 0.01)
        train_loss = 1.0 * 0.9**k
        gap = (0.5 if shortcut[k] else 1 / 16) + k / 64
        events.append(
            _signals(
                5 * k,
                train_loss,
                val,
                train_accuracy=0.25 + gap,
                val_accuracy=0.25,
                explanation_gap=0.4 if shortcut[k] else 0.0,
            )
        )
    return events


def _rises(detector: OverfitDetector, events: list[EventSignals]) -> tuple[list[list[Alert]], list[float]]:
    raised, rises = [], []
    for event in events:
        raised.append(detector.update(event))
        rises.append(detector.rise)
    return raised, rises


def test_mixed_events_raise_both_kinds_of_alert_more_than_once():
    raised = _run(OverfitDetector(patience=2), _mixed_events())
    kinds = [kind for _, kind in _alerts(raised)]
    assert kinds.count("overfitting") >= 2 and kinds.count("shortcut") >= 2


@pytest.mark.parametrize("split", [1, 4, 6, 8, 10, 12, 15, 19])
def test_state_dict_round_trip_gives_the_same_alerts_and_statistics_as_one_run(split):
    events = _mixed_events()
    straight, straight_rises = _rises(OverfitDetector(patience=2), events)
    assert sum(len(batch) for batch in straight) >= 4
    assert sum(len(batch) for batch in straight[split:]) >= 1

    first_half = OverfitDetector(patience=2)
    _run(first_half, events[:split])
    buffer = io.BytesIO()
    torch.save(first_half.state_dict(), buffer)  # as a checkpoint would
    buffer.seek(0)
    resumed = OverfitDetector(patience=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.active == first_half.active
    assert resumed.best == first_half.best
    raised, rises = _rises(resumed, events[split:])
    assert raised == straight[split:]
    assert rises == pytest.approx(straight_rises[split:], nan_ok=True)
    assert math.isfinite(rises[0])  # the restored references are used at once


def test_state_dict_matters_a_fresh_detector_raises_different_alerts():
    # guards the round-trip test: without the restored state the rest of the sequence gives other alerts
    events = _mixed_events()
    straight = _run(OverfitDetector(patience=2), events)
    split = 8
    assert _run(OverfitDetector(patience=2), events[split:]) != straight[split:]


def test_state_dict_without_half_best_restarts_the_references():
    # a detector that lost its half references (or a checkpoint from before they existed) gives other statistics:
    # the round trip above depends on them
    events = _mixed_events()
    split = 10
    detector = OverfitDetector(patience=2)
    _run(detector, events[:split])
    state = detector.state_dict()
    _, straight_rises = _rises(detector, events[split:])
    del state["half_best"]
    resumed = OverfitDetector(patience=2)
    resumed.load_state_dict(state)
    assert resumed.half_best == [None, None]
    _, rises = _rises(resumed, events[split:])
    assert math.isnan(rises[0]) and math.isfinite(straight_rises[0])
    assert rises[1:] != pytest.approx(straight_rises[1:])
