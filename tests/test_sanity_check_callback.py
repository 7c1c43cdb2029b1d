"""SanityCheckCallback: one sanity check per run, correlations as scalars, a warning on failure."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, read_tensorboard, trainer

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.sanity_check_callback import SanityCheckCallback


def edge_map(model, inputs, targets):
    """Ignores the model: horizontal edges of the input."""
    return (inputs[:, :, :, 1:] - inputs[:, :, :, :-1]).abs().amax(1)


def fit(tmp_path, callback, logger=None, model=None, **kwargs):
    train, val = loaders()
    torch.manual_seed(0)
    model = model or LitCNN()
    trainer(tmp_path, [callback], logger=logger or RecordingLogger(), **kwargs).fit(model, train, val)
    return model


def test_runs_once_at_fit_end_and_logs_correlations(tmp_path):
    callback = SanityCheckCallback(methods=("saliency", "grad_cam", edge_map))
    recording = RecordingLogger()
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    with pytest.warns(UserWarning, match=r"maps of \['edge_map'\] do not depend on the model's weights"):
        fit(tmp_path, callback, logger=[recording, tensorboard], max_epochs=2)
    logged = [(step, m) for step, m in recording.metrics if any(k.startswith("sanity_check/") for k in m)]
    assert len(logged) == 1 and logged[0][0] == 8  # once, at the end (8 steps)
    metrics = logged[0][1]
    layers = ["head.3", "features.3", "features.1", "features.0"]  # output first
    for method in ("saliency", "grad_cam", "edge_map"):
        assert [k for k in metrics if k.startswith(f"sanity_check/{method}/") and k.split("/")[-1] in layers] == [
            f"sanity_check/{method}/{layer}" for layer in layers
        ]
    assert metrics["sanity_check/edge_map/final"] == pytest.approx(1.0)
    assert metrics["sanity_check/edge_map/passed"] == 0.0
    assert metrics["sanity_check/saliency/final"] < 0.9
    assert callback.result is not None and callback.result.passed["edge_map"] is False
    assert "sanity_check/summary/text_summary" in read_tensorboard(tmp_path / "tb" / "version_0").Tags()["tensors"]


def test_fit_start_runs_before_the_first_step_and_not_again_after_restore(tmp_path):
    callback = SanityCheckCallback(methods="saliency", at="fit_start")
    recording = RecordingLogger()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*do not depend.*")
        fit(tmp_path, callback, logger=recording, max_epochs=1)
    assert recording.series("sanity_check/saliency/passed") == [(0, 1.0)]
    resumed = SanityCheckCallback(methods="saliency", at="fit_start")
    resumed.load_state_dict(callback.state_dict())
    again = RecordingLogger()
    fit(tmp_path, resumed, logger=again, max_epochs=1)
    assert again.series("sanity_check/saliency/passed") == []


def test_training_is_not_disturbed(tmp_path):
    def weights(callbacks):
        torch.manual_seed(0)
        model = LitCNN()
        train, val = loaders()
        trainer(tmp_path, callbacks, max_epochs=1).fit(model, train, val)
        return model.state_dict()

    plain = weights([])
    checked = weights([SanityCheckCallback(at="fit_start")])
    assert all(torch.equal(plain[k], checked[k]) for k in plain)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(layer="features.9"), "not a module"), (dict(layers=["nope"]), r"layers \['nope'\]")],
)
def test_bad_configuration_stops_fit_before_the_first_step(tmp_path, kwargs, match):
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match=match):
        fit(tmp_path, SanityCheckCallback(**kwargs), model=model)
    assert model.training_steps == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(methods=("nope",)), "Unknown method"),
        (dict(methods=()), "methods must hold"),
        (dict(at="epoch_end"), "at must be one of"),
        (dict(threshold=2), "threshold"),
        (dict(layers="fc"), "layers must be"),
        (dict(target=1.5), "target must be"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SanityCheckCallback(**kwargs)
