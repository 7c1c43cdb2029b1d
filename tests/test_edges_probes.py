"""Issue 13, items 2-7: a sanity check that measured nothing, empty data, bad probes, raw errors, small edges."""

from __future__ import annotations

import types
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lit_helpers import LitCNN, RecordingLogger, loaders, make_images, trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import (
    ExplainCallback,
    GradientNormMonitor,
    OverfitMonitor,
    SanityCheckCallback,
)
from lightning_explain._compat import MisconfigurationException
from lightning_explain.analysis.sanity_check import sanity_check
from lightning_explain.callbacks.probe import select_probe


def fit(tmp_path, callbacks, model=None, data=None, logger=None, **kwargs):
    run = trainer(tmp_path, callbacks, logger=logger, max_epochs=1, **kwargs)
    run.fit(model or LitCNN(), *(data or loaders()))
    return run


# ------------------------------------------------------------------------- 2. an undefined sanity check
class DeadCNN(LitCNN):
    """Its output does not depend on the input: every saliency map is all zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x) * 0.0)


def test_a_sanity_check_of_constant_maps_is_undefined_not_passed():
    model = DeadCNN().eval()
    with pytest.warns(UserWarning, match="undefined.*constant"):
        result = sanity_check(model, make_images(4, seed=0)[0], methods=("saliency",))
    assert result.passed["saliency"] is False and result.undefined["saliency"] is True
    assert "UNDEFINED" in result.summary


def test_the_sanity_check_callback_does_not_log_passed_for_constant_maps(tmp_path):
    logger = RecordingLogger()
    with pytest.warns(UserWarning, match="SanityCheckCallback.*undefined.*constant"):
        fit(tmp_path, [SanityCheckCallback(methods=("saliency",), at="fit_start")], model=DeadCNN(), logger=logger)
    assert not logger.series("sanity_check/saliency/passed")


# ------------------------------------------------------------------------- 3. an empty validation dataset
def test_an_empty_validation_dataset_falls_back_to_the_training_data(tmp_path):
    train_loader, _ = loaders()
    empty = DataLoader(TensorDataset(torch.empty(0, 1, 12, 12), torch.empty(0, dtype=torch.long)), batch_size=8)
    callback = ExplainCallback(every_n_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [callback], data=(train_loader, empty))
    assert torch.equal(callback.probe.inputs, train_loader.dataset.tensors[0][:8])


def test_no_data_for_a_probe_names_the_callback_and_the_loader():
    empty = DataLoader(TensorDataset(torch.empty(0, 1, 12, 12)), batch_size=8)
    fake = types.SimpleNamespace(val_dataloaders=None, train_dataloader=empty)
    with pytest.raises(ValueError, match="ExplainCallback.*training dataloader.*empty"):
        select_probe(fake, 4, owner="ExplainCallback")


# -------------------------------------------------------------------------- 4. errors that name the fix
class TwoArgumentCNN(LitCNN):
    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x) * scale


class DictCNN(LitCNN):
    """Returns ``{key: logits}``: ``"logits"`` is read without configuration, another key needs ``output=``."""

    key = "logits"

    def forward(self, x: torch.Tensor) -> Any:
        return {self.key: super().forward(x)}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0])[self.key], batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


class ScoresDictCNN(DictCNN):
    key = "scores"


x4 = make_images(4, seed=9)[0]


@pytest.mark.parametrize(
    ("callback", "model", "match"),
    [
        (
            lambda: ExplainCallback(probe=torch.randn(4, 3, 12, 12)),
            LitCNN,
            r"ExplainCallback.*\(4, 3, 12, 12\).*probe=",
        ),
        (
            lambda: GradientNormMonitor(source="probe", probe=(x4, torch.full((4,), 10))),
            LitCNN,
            r"GradientNormMonitor.*in \[10, 10\].*class indices below",
        ),
        (
            lambda: OverfitMonitor(val_probe=(x4, torch.full((4,), 10))),
            LitCNN,
            r"OverfitMonitor.*class indices below.*val_probe=",
        ),
        (lambda: ExplainCallback(), TwoArgumentCNN, r"ExplainCallback.*wrap the model.*further arguments"),
        (lambda: GradientNormMonitor(source="probe"), ScoresDictCNN, r"GradientNormMonitor.*\['scores'\].*output="),
        (lambda: OverfitMonitor(probe_size=8), ScoresDictCNN, r"OverfitMonitor.*\['scores'\].*output="),
    ],
)
def test_a_probe_the_model_cannot_take_stops_fit_with_the_callback_the_probe_and_the_fix(
    tmp_path, callback, model, match
):
    instance = callback()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MisconfigurationException, match=match):
            fit(tmp_path, [instance], model=model())


@pytest.mark.parametrize(
    "callback",
    [
        lambda **kw: GradientNormMonitor(source="probe", every_n_steps=2, **kw),
        lambda **kw: OverfitMonitor(probe_size=8, every_n_steps=2, image_samples=0, **kw),
    ],
)
def test_a_model_returning_a_dict_is_read_through_its_logits_or_the_key_given_as_output(tmp_path, callback):
    for model, kwargs in ((DictCNN(), {}), (ScoresDictCNN(), {"output": "scores"})):
        instance = callback(**kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(tmp_path, [instance], model=model)
        assert instance._last_event_step == 4


def test_a_float64_probe_is_cast_to_the_models_dtype_with_a_note(tmp_path):
    callback = ExplainCallback(probe=x4.double(), every_n_steps=2)
    with pytest.warns(UserWarning, match="cast to torch.float32"):
        fit(tmp_path, [callback])
    assert callback.probe.inputs.dtype == torch.float32 and callback._last_event_step == 4


# ------------------------------------------------------------------------------------- 5. bad probes
@pytest.mark.parametrize(
    ("probe", "match"),
    [
        (torch.empty(0, 1, 12, 12), "probe.*empty"),
        (torch.full((4, 1, 12, 12), float("nan")), "probe.*NaN or inf.*4 of its 4 samples"),
        ((torch.full((4, 1, 12, 12), float("nan")), torch.zeros(4, dtype=torch.long)), "probe.*NaN"),
    ],
)
def test_an_empty_or_nan_probe_is_refused_naming_the_probe(probe, match):
    with pytest.raises(ValueError, match=match):
        ExplainCallback(probe=probe)


def test_a_nan_probe_from_the_data_stops_fit_before_the_first_step(tmp_path):
    train_loader, _ = loaders()
    bad = TensorDataset(torch.full((8, 1, 12, 12), float("nan")), torch.zeros(8, dtype=torch.long))
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match="ExplainCallback.*validation.*NaN or inf"):
        fit(tmp_path, [ExplainCallback()], model=model, data=(train_loader, DataLoader(bad, batch_size=4)))
    assert model.training_steps == 0
