"""ActivationMaximizationCallback: images of what channels respond to, at each event, training untouched."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, read_tensorboard, trainer

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.activation_max_callback import ActivationMaximizationCallback


def fit(tmp_path, callbacks, model=None, logger=None, **kwargs):
    torch.manual_seed(0)
    model = model or LitCNN()
    train, val = loaders()
    trainer(tmp_path, callbacks, logger=logger, max_epochs=1, **kwargs).fit(model, train, val)
    return model


def test_logs_one_row_of_images_per_event_and_they_change_with_training(tmp_path):
    callback = ActivationMaximizationCallback(layer="features.3", channels=[0, 2, 5], steps=4)
    fit(tmp_path, [callback], logger=TensorBoardLogger(tmp_path, name="tb"))
    events = read_tensorboard(tmp_path / "tb" / "version_0").Images("activation_max/features.3")
    assert [e.step for e in events] == [0, 4]
    assert (events[0].height, events[0].width) == (12 * 6 + 4, 3 * (12 * 6 + 4))  # 12x12 inputs, enlarged 6x
    assert events[0].encoded_image_string != events[1].encoded_image_string  # same seed, a changed model


def test_training_is_not_disturbed(tmp_path):
    plain = fit(tmp_path, []).state_dict()
    callback = ActivationMaximizationCallback(
        layer="features.0", channels=[1], steps=2, every_n_epochs=None, every_n_steps=1
    )
    watched = fit(tmp_path, [callback], logger=TensorBoardLogger(tmp_path, name="tb")).state_dict()
    assert all(torch.equal(plain[k], watched[k]) for k in plain)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layer="features.3", channels=[8]), "has 8 channels"),
        (dict(layer="featurez.3", channels=[0]), "not a module"),
        (dict(layer="head.3", channels=[0], probe=torch.randn(2, 144)), r"optimises images \(C, H, W\)"),
    ],
)
def test_bad_configuration_stops_fit_before_the_first_step(tmp_path, kwargs, match):
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match=match):
        fit(tmp_path, [ActivationMaximizationCallback(steps=1, **kwargs)], model=model)
    assert model.training_steps == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=[]), "channels"),
        (dict(steps=0), "steps"),
        (dict(input_shape=(8, 8)), "input_shape"),
        (dict(lr=0), "lr must be"),
        (dict(layer=3), "layer must be"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationMaximizationCallback(**(dict(layer="features.0", channels=[0]) | kwargs))
