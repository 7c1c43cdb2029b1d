"""The README's demo runs end to end on the bundled digits and leaves images in TensorBoard."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lit_helpers import read_tensorboard

DEMO = Path(__file__).resolve().parents[1] / "examples" / "digits.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("digits_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_demo_writes_explanations(tmp_path, capsys):
    demo = load_demo()
    demo.main(["--max-epochs", "1", "--limit-train-batches", "0.5", "--logdir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path}" in printed
    events = read_tensorboard(tmp_path / "version_0")  # one folder per example: --logdir holds its versions
    for method in ("grad_cam", "integrated_gradients"):
        steps = [e.step for e in events.Images(f"explain/{method}")]
        assert steps == [0, 10, 11]  # baseline, every 10 steps, the end of the (half) epoch: 11 of 23 batches
        assert f"explain/{method}/concentration" in events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("grad_norm/train/total")] == [0, 10]  # first and last optimizer step


def test_every_demo_option_has_help_text(capsys):
    import pytest

    demo = load_demo()
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    text = capsys.readouterr().out
    for option in (
        "--max-epochs",
        "--logdir",
        "--every-n-steps",
        "--methods",
        "--limit-train-batches",
        "--size",
        "--seed",
    ):
        assert f"{option} " in text
    assert text.count("(default:") >= 7


def test_quickstart_runs_as_pasted(tmp_path, monkeypatch):
    import runpy

    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(DEMO.parent / "quickstart.py"), run_name="__main__")
    events = read_tensorboard(tmp_path / "logs" / "quickstart" / "version_0")
    images = events.Images("explain/grad_cam")
    assert images[0].step == 0 and images[-1].step == 184  # 8 epochs of 23 steps
    assert {"explain/probe_accuracy", "grad_norm/train/total", "val_acc"} <= set(events.Tags()["scalars"])


def test_the_readme_shows_the_quickstart_as_it_is():
    readme = (DEMO.parents[1] / "README.md").read_text()
    assert (DEMO.parent / "quickstart.py").read_text().strip() in readme


def test_digits_are_real_handwritten_digits():
    demo = load_demo()
    data = demo.DigitsDataModule()
    data.setup("fit")
    images, labels = data.train_set.tensors
    assert images.shape == (1437, 1, 32, 32) and len(data.val_set) == 360
    assert set(labels.tolist()) == set(range(10))
