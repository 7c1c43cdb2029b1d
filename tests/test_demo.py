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
    events = read_tensorboard(tmp_path / "digits" / "version_0")
    steps = [e.step for e in events.Images("explain/grad_cam")]
    assert steps == [0, 10, 11]  # baseline, every 10 steps, the end of the (half) epoch: 11 of 23 batches
    assert "grad_norm/train/total" in events.Tags()["scalars"]
    assert "explain/saliency/concentration" in events.Tags()["scalars"]


def test_digits_are_real_handwritten_digits():
    demo = load_demo()
    data = demo.DigitsDataModule()
    data.setup("fit")
    images, labels = data.train_set.tensors
    assert images.shape == (1437, 1, 32, 32) and len(data.val_set) == 360
    assert set(labels.tolist()) == set(range(10))
