"""ModelHistogramMonitor: weight and activation histograms, the graph once, training undisturbed."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, read_tensorboard, trainer
from toy_models import ResidualCNN, assert_model_unchanged, snapshot_model, warm_batchnorm

from lightning_explain.callbacks.model_monitor import ModelHistogramMonitor, leaf_activations


class Untraceable(LitCNN):
    """Its forward branches on a Python value computed from the data: tracing fails under strict mode."""

    def forward(self, x):
        out = super().forward(x)
        return {"logits": out} if self._jit_is_scripting else out


def run(tmp_path, callback, model=None, **kwargs):
    logger = TensorBoardLogger(tmp_path, name="tb")
    train, val = loaders()
    torch.manual_seed(0)
    model = model or LitCNN()
    trainer(tmp_path, [callback], logger=logger, **kwargs).fit(model, train, val)
    return read_tensorboard(tmp_path / "tb" / "version_0"), model


def test_weights_activations_and_graph(tmp_path):
    events, model = run(tmp_path, ModelHistogramMonitor(every_n_epochs=1), max_epochs=1)
    tags = events.Tags()
    weights = {f"model/weights/{n}" for n, _ in model.named_parameters()}
    assert weights <= set(tags["histograms"])
    activations = {t for t in tags["histograms"] if t.startswith("model/activations/")}
    assert activations == {
        f"model/activations/{n}"
        for n in (
            "features.0",
            "features.1",
            "features.2",
            "features.3",
            "features.4",
            "head.0",
            "head.1",
            "head.2",
            "head.3",
        )
    }
    assert [e.step for e in events.Histograms("model/weights/head.3.weight")] == [0, 4]
    histogram = events.Histograms("model/activations/features.2")[0].histogram_value
    assert histogram.min >= 0 and histogram.num == 8 * 6 * 12 * 12  # after the in-place ReLU: non-negative
    before_relu = events.Histograms("model/activations/features.1")[0].histogram_value
    assert before_relu.min < 0  # the BatchNorm output was copied before the ReLU overwrote it
    assert tags["graph"] is True


def test_only_weights_needs_no_probe(tmp_path):
    events, _ = run(
        tmp_path,
        ModelHistogramMonitor(activations=False, graph=False, every_n_epochs=None, every_n_steps=2),
        max_epochs=1,
    )
    tags = events.Tags()
    assert not [t for t in tags["histograms"] if "activations" in t]
    assert [e.step for e in events.Histograms("model/weights/features.0.weight")] == [0, 2, 4]
    assert tags["graph"] is False


def test_a_graph_that_cannot_be_traced_is_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="could not trace the model"):
        events, _ = run(tmp_path, ModelHistogramMonitor(activations=False), model=Untraceable(), max_epochs=1)
    assert events.Tags()["graph"] is False
    assert "model/weights/features.0.weight" in events.Tags()["histograms"]


def test_training_is_not_disturbed(tmp_path):
    def fit(callbacks):
        torch.manual_seed(0)
        model = LitCNN()
        train, val = loaders()
        trainer(tmp_path, callbacks, logger=TensorBoardLogger(tmp_path, name="x"), max_epochs=1).fit(model, train, val)
        return model.state_dict()

    plain = fit([])
    monitored = fit([ModelHistogramMonitor(every_n_epochs=None, every_n_steps=1)])
    assert all(torch.equal(plain[k], monitored[k]) for k in plain)


def test_leaf_activations_leave_the_model_as_found():
    model = ResidualCNN(3, 4)
    x = torch.randn(2, 3, 8, 8)
    warm_batchnorm(model, x)
    model.train()
    snapshot = snapshot_model(model)
    outputs = leaf_activations(model, x)
    assert_model_unchanged(model, snapshot)
    assert outputs["fc"].shape == (2, 4) and "block" not in outputs and "block.conv1" in outputs


def test_without_tensorboard_it_warns_at_setup(tmp_path):
    train, val = loaders()
    with pytest.warns(UserWarning, match="need a TensorBoardLogger"):
        trainer(tmp_path, [ModelHistogramMonitor()], logger=RecordingLogger(), max_epochs=1).fit(LitCNN(), train, val)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights=False, activations=False, graph=False), "nothing to do"),
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(graph="yes"), "graph must be"),
        (dict(prefix=""), "prefix"),
        (dict(probe_size=0), "probe_size"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelHistogramMonitor(**kwargs)
