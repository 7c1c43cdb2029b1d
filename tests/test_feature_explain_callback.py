"""FeatureExplainCallback: tabular and sequence probes in TensorBoard, errors at fit start."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import RecordingLogger, read_tensorboard, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.feature_explain_callback import FeatureExplainCallback


class LitTable(LightningModule):
    """An MLP over (N, F) or a small 1-D conv net over (N, T, D) sequences, with BatchNorm and Dropout."""

    def __init__(self, features: int = 6, sequence: bool = False) -> None:
        super().__init__()
        if sequence:
            self.net = nn.Sequential(
                nn.Flatten(), nn.Linear(features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2)
            )
        else:
            self.net = nn.Sequential(
                nn.Linear(features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        assert self.training
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def table(n: int = 64, features: int = 6, seed: int = 0):
    """Class = sign of feature 2; the other features are noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 2] > 0).long()


def loader(x, y, batch_size=16):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_tabular_logs_bars_scalars_and_histogram(tmp_path):
    x, y = table()
    names = ["a", "b", "signal", "d", "e", "f"]
    callback = FeatureExplainCallback(probe=(x[:32], y[:32]), feature_names=names, top_k=3)
    logger = TensorBoardLogger(tmp_path, name="tb")
    recording = RecordingLogger()
    torch.manual_seed(0)
    trainer(tmp_path, [callback], logger=[logger, recording], max_epochs=3).fit(LitTable(), loader(x, y))
    events = read_tensorboard(tmp_path / "tb" / "version_0")
    assert [e.step for e in events.Images("explain/saliency/features")] == [0, 4, 8, 12]
    assert [e.step for e in events.Histograms("explain/saliency/values")] == [0, 4, 8, 12]
    last = {k: v for step, m in recording.metrics if step == 12 for k, v in m.items()}
    top = [k for k in last if k.startswith("explain/saliency/feature/")]
    assert len(top) == 3 and "explain/saliency/feature/signal" in top
    assert last["explain/saliency/feature/signal"] == max(last[k] for k in top)  # the model learned feature 2
    assert last["explain/probe_accuracy"] > 0.8
    assert "explain/saliency/change" in last and 0 <= last["explain/saliency/change"] <= 2
    image = events.Images("explain/saliency/features")[-1]
    assert image.width > 200 and image.height > 3 * 10


def test_sequences_log_strips(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 10, 3, generator=g)
    y = (x[:, 7, 0] > 0).long()  # the class is in time step 7
    callback = FeatureExplainCallback(probe=(x[:8], y[:8]), every_n_epochs=None, every_n_steps=3)
    logger = TensorBoardLogger(tmp_path, name="tb")
    recording = RecordingLogger()
    torch.manual_seed(0)
    trainer(tmp_path, [callback], logger=[logger, recording], max_epochs=1).fit(
        LitTable(30, sequence=True), loader(x, y)
    )
    events = read_tensorboard(tmp_path / "tb" / "version_0")
    assert [e.step for e in events.Images("explain/saliency/sequences")] == [0, 3]
    assert len(recording.series("explain/saliency/concentration")) == 2
    assert not any(k.startswith("explain/saliency/feature/") for _, m in recording.metrics for k in m)


def test_a_custom_method_and_2d_sequences(tmp_path):
    x, y = table(32, features=12)
    calls = []

    def input_times_gradient(model, inputs, target):
        calls.append(target)
        return inputs.abs()

    callback = FeatureExplainCallback(probe=(x[:8], y[:8]), method=input_times_gradient, kind="sequence", target=1)
    recording = RecordingLogger()
    trainer(tmp_path, [callback], logger=recording, max_epochs=1).fit(LitTable(12), loader(x, y))
    assert calls and all(c == 1 for c in calls)
    assert recording.series("explain/input_times_gradient/concentration")
    assert recording.series("explain/probe_accuracy")


@pytest.mark.parametrize(
    "probe, kwargs, match",
    [
        (torch.randn(4, 1, 6, 6), {}, r"tabular inputs \(N, F\) or sequences"),
        (torch.randn(4, 3, 2), dict(kind="tabular"), "kind='tabular'"),
        (torch.randn(4, 6), dict(feature_names=["a", "b"]), "2 names, but the probe has 6"),
        (torch.zeros(4, 6, dtype=torch.long), {}, "floating-point"),
    ],
)
def test_bad_probes_stop_fit_before_the_first_step(tmp_path, probe, kwargs, match):
    x, y = table()
    model = LitTable()
    callback = FeatureExplainCallback(probe=probe, **kwargs)
    with pytest.raises(MisconfigurationException, match=match):
        trainer(tmp_path, [callback]).fit(model, loader(x, y))
    assert model.global_step == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="grad_cam"), "method must be"),
        (dict(kind="image"), "kind must be one of"),
        (dict(feature_names="abc"), "feature_names"),
        (dict(top_k=0), "top_k"),
        (dict(target="best"), "target must be"),
        (dict(every_n_steps=0), "every_n_steps"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureExplainCallback(**kwargs)


def test_training_is_not_disturbed(tmp_path):
    """Same weights with and without the callback (eval mode, no RNG, BatchNorm statistics untouched)."""
    x, y = table()

    def run(callbacks):
        torch.manual_seed(0)
        model = LitTable()
        trainer(tmp_path, callbacks, max_epochs=2).fit(
            model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        )
        return model.state_dict()

    plain = run([])
    explained = run([FeatureExplainCallback(probe=(x[:8], y[:8]), every_n_epochs=None, every_n_steps=1)])
    assert all(torch.equal(plain[k], explained[k]) for k in plain)


def test_state_dict_round_trip(tmp_path):
    x, y = table()
    callback = FeatureExplainCallback(probe=(x[:8], y[:8]))
    trainer(tmp_path, [callback], max_epochs=1).fit(LitTable(), loader(x, y))
    state = callback.state_dict()
    restored = FeatureExplainCallback()
    restored.load_state_dict(state)
    assert restored._last_event_step == callback._last_event_step == 4
    ranks, kept = restored._change.state_dict()["saliency"], callback._change.state_dict()["saliency"]
    assert torch.equal(ranks, kept) and ranks.shape == (8, 6)
    assert np.allclose(restored._probe.inputs.numpy(), x[:8].numpy())
