"""examples/overfitting.py: OverfitMonitor's defaults on the three synthetic scenarios, in real fits.

Shorter runs than the README's table (which uses the full lengths and five seeds), so the suite
stays fast; each assertion is one the table reports too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "overfitting.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("overfitting_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_shortcut_raises_a_shortcut_alert_and_saliency_sits_on_the_marker(example, tmp_path):
    result = example.run_scenario("shortcut", 0, logdir=str(tmp_path), max_epochs=4)
    assert result["alerts"], "no alert on the shortcut run"
    first = result["alerts"][0]
    assert first.kind == "shortcut" and "regions of interest" in first.reason
    assert first.step <= 3 * result["steps_per_epoch"]  # within the first three epochs
    on_marker, on_shape = example.saliency_on_marker(result["model"], result["train"])
    marker_area = example.MARKER_SIZE**2 / 32**2
    assert on_marker > 10 * marker_area  # the 3x3 marker (0.9% of the image) draws far more than its share
    assert on_marker > on_shape  # more than the whole shape's bounding box


def test_without_masks_the_shortcut_shows_as_training_and_validation_explained_differently(example, tmp_path):
    result = example.run_scenario("shortcut-no-masks", 1, logdir=str(tmp_path), max_epochs=3)
    assert result["alerts"], "no alert on the shortcut run without masks"
    first = result["alerts"][0]
    assert first.kind == "shortcut" and "explains training inputs differently" in first.reason


def test_memorisation_raises_an_overfitting_alert_once_validation_loss_stops_improving(example, tmp_path):
    result = example.run_scenario("memorisation", 2, logdir=str(tmp_path), max_epochs=20)
    kinds = [alert.kind for alert in result["alerts"]]
    assert "overfitting" in kinds
    alert_step = result["alerts"][kinds.index("overfitting")].step
    since_minimum = alert_step - result["smoothed_minimum_step"]
    assert since_minimum >= 0  # not while validation loss still improves
    assert since_minimum <= 8 * result["steps_per_epoch"]  # near where it stops improving (4 epochs on this seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_clean_run_raises_no_alert(example, tmp_path, seed):
    result = example.run_scenario("clean", seed, logdir=str(tmp_path), max_epochs=5)
    assert result["alerts"] == []


def test_main_prints_the_alert_and_where_saliency_sits(example, tmp_path, capsys):
    example.main(["--scenario", "shortcut", "--max-epochs", "3", "--logdir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "[shortcut]" in printed and "on the marker" in printed
    assert "EarlyStopping(patience=3)" in printed
    picture = next(tmp_path.rglob("train_saliency.png"))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(picture) in printed


def test_the_probe_size_study_runs_and_prints_a_row_per_run(capsys):
    import sys

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        import study_overfit_probe_size as study
    finally:
        sys.path.remove(str(benchmarks))
    threads = torch.get_num_threads()
    try:
        rows = study.main(["--quick", "--sizes", "16", "64"])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert [(r["scenario"], sorted(r["alerts"])) for r in rows] == [("memorisation", [16, 64]), ("clean", [16, 64])]
    assert printed.count("\n| memorisation | 0 |") == 1 and "| alert, 16 | alert, 64 |" in printed
