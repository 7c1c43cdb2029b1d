"""Lightning's DDP on 2 CPU processes (gloo): no hang, rank zero writes, each step logged once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lit_helpers import read_tensorboard

SCRIPT = Path(__file__).with_name("ddp_script.py")


def run_ddp(out: Path, *flags: str) -> dict[int, dict]:
    out.mkdir()
    # A hang (a collective on one rank only) would show up here as a timeout.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *flags], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {r: json.loads((out / f"rank_{r}.json").read_text()) for r in (0, 1)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    return run_ddp(base / "with"), run_ddp(base / "without", "--no-callbacks"), base / "with"


NO_CALLS = {"scalars": 0, "image": 0, "histogram": 0, "text": 0}


def test_only_global_rank_zero_writes(runs):
    explained, _, _ = runs
    assert explained[1]["calls"] == NO_CALLS
    assert explained[0]["calls"]["image"] > 0 and explained[0]["calls"]["histogram"] > 0


def test_each_step_is_logged_once(runs):
    explained, _, out = runs
    steps = explained[0]["steps"]
    assert steps == 4
    events = read_tensorboard(out / "logs")
    for tag in ("explain/saliency", "explain/grad_cam"):
        assert [e.step for e in events.Images(tag)] == list(range(steps + 1))  # baseline + every step
    for tag in ("grad_norm/probe/total", "explain/probe_accuracy"):
        assert [e.step for e in events.Scalars(tag)] == list(range(steps + 1))
    # train gradients are read before each optimizer step: steps 0..3
    assert [e.step for e in events.Scalars("grad_norm/train/total")] == list(range(steps))
    files = list((out / "logs").glob("events.out.tfevents.*"))
    ours = [f for f in files if f.name.endswith(".lightning_explain")]  # images and histograms, on rank zero
    assert len(ours) == 1 and len(files) == 2  # one file of the logger's and one of ours: one writer each


def test_ddp_training_is_unchanged_by_the_callbacks(runs):
    explained, plain, _ = runs
    assert explained[0]["weights"] == explained[1]["weights"]  # ranks stayed in sync
    assert explained[0]["weights"] == plain[0]["weights"]


def test_stop_on_alert_stops_every_rank_at_the_same_step(tmp_path):
    """The alert is raised on rank zero only; every rank must still stop, or DDP hangs."""
    ranks = run_ddp(tmp_path / "stop", "--stop-on-alert")
    assert ranks[0]["steps"] == ranks[1]["steps"] == 1  # the alert at step 1; 10 epochs were allowed
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_a_transformer_returning_a_model_output_under_ddp(tmp_path):
    """A Hugging Face ViT (ModelOutput, a token layer): rank zero writes, training unchanged, ranks in sync."""
    pytest.importorskip("transformers")
    explained = run_ddp(tmp_path / "with", "--hf-vit")
    plain = run_ddp(tmp_path / "without", "--hf-vit", "--no-callbacks")
    assert explained[1]["calls"] == NO_CALLS
    assert explained[0]["calls"]["image"] > 0
    assert explained[0]["weights"] == explained[1]["weights"] == plain[0]["weights"]
    events = read_tensorboard(tmp_path / "with" / "logs")
    assert [e.step for e in events.Images("explain/grad_cam")] == list(range(explained[0]["steps"] + 1))


def test_a_text_model_on_dict_batches_under_ddp(tmp_path):
    """BERT on dict batches with TokenExplainCallback (three methods, quality): rank zero writes pictures and text,
    every step once, and training is the same as without it."""
    explained = run_ddp(tmp_path / "with", "--text")
    plain = run_ddp(tmp_path / "without", "--text", "--no-callbacks")
    assert explained[1]["calls"] == NO_CALLS
    assert explained[0]["calls"]["image"] > 0 and explained[0]["calls"]["text"] > 0
    assert explained[0]["weights"] == explained[1]["weights"] == plain[0]["weights"]
    steps = list(range(explained[0]["steps"] + 1))
    events = read_tensorboard(tmp_path / "with" / "logs")
    for method in ("input_x_gradient", "saliency", "integrated_gradients"):
        assert [e.step for e in events.Images(f"explain/{method}")] == steps
        assert [e.step for e in events.Scalars(f"explain/{method}/deletion_auc")] == steps
    assert [e.step for e in events.Scalars("explain/random/insertion_auc")] == steps
