"""Issue 13, items 6 and 7: compiled modules, feature maps, unlabelled samples, resume, exceptions, regression."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, make_images, read_tensorboard, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback, GradientNormMonitor, OverfitMonitor
from lightning_explain._compat import MisconfigurationException


def fit(tmp_path, callbacks, model=None, data=None, logger=None, **kwargs):
    run = trainer(tmp_path, callbacks, logger=logger, max_epochs=1, **kwargs)
    run.fit(model or LitCNN(), *(data or loaders()))
    return run


# ------------------------------------------------------------------------------------------ 6. and also
def test_the_overfit_monitor_survives_a_backward_that_refuses_retain_graph(tmp_path, monkeypatch):
    """What a compiled submodule with donated buffers (torch.compile) raises for retain_graph=True."""
    import lightning_explain.overfit.signals as signals

    original = torch.autograd.grad

    def grad(*args: Any, **kwargs: Any):
        if kwargs.get("retain_graph"):
            raise RuntimeError(
                "This backward function was compiled with non-empty donated buffers which requires "
                "create_graph=False and retain_graph=False."
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(signals.torch.autograd, "grad", grad)
    logger = RecordingLogger()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [OverfitMonitor(every_n_steps=2, probe_size=8)], logger=logger)
    assert [s for s, _ in logger.series("overfit/explanation_gap")] == [0, 2, 4]


def test_feature_maps_of_a_layer_that_is_not_spatial_stop_fit_at_the_start(tmp_path):
    model = LitCNN()
    logger = TensorBoardLogger(tmp_path, name="tb")
    with pytest.raises(MisconfigurationException, match=r"feature_maps.*\(N, C, h, w\).*head.3"):
        fit(tmp_path, [ExplainCallback(methods=["feature_maps"], layer="head.3")], model=model, logger=logger)
    assert model.training_steps == 0


def unlabelled_val_data():
    train_loader, _ = loaders()
    x, y = make_images(16, seed=2)
    y[::2] = -100  # unlabelled samples, as Lightning and transformers mark them
    return train_loader, DataLoader(TensorDataset(x, y), batch_size=8)


def test_explain_callback_hints_at_target_predicted_for_unlabelled_samples(tmp_path):
    with pytest.raises(MisconfigurationException, match="-100.*target='predicted'"):
        fit(tmp_path, [ExplainCallback(target="label")], data=unlabelled_val_data())


def test_by_default_unlabelled_samples_are_explained_for_the_predicted_class(tmp_path):
    callback = ExplainCallback(every_n_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [callback], data=unlabelled_val_data())
    assert callback._target_mode == "predicted" and callback._last_event_step == 4


def test_the_overfit_monitor_ignores_unlabelled_samples_as_the_losses_do(tmp_path):
    monitor = OverfitMonitor(every_n_steps=2, probe_size=16)
    logger = RecordingLogger()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [monitor], data=unlabelled_val_data(), logger=logger)
    assert len(monitor.probe) == 8 and bool((monitor.probe.targets >= 0).all())
    assert [s for s, _ in logger.series("overfit/val_loss")] == [0, 2, 4]


def test_an_explicit_probe_on_resume_says_which_probe_is_used(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [ExplainCallback(every_n_steps=2), checkpoint], enable_checkpointing=True)
    resumed = ExplainCallback(every_n_steps=2, probe=torch.zeros(4, 1, 12, 12))
    run = trainer(tmp_path, [resumed], max_epochs=2)
    with pytest.warns(UserWarning, match="probe= differs from the probe saved in the checkpoint.*checkpoint's probe"):
        run.fit(LitCNN(), *loaders(), ckpt_path=checkpoint.last_model_path)


class FailsAtStep(Callback):
    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == 3:
            raise RuntimeError("another callback failed")


def test_an_exception_elsewhere_writes_the_pending_images_and_stops_the_image_thread(tmp_path):
    import threading

    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    with pytest.raises(RuntimeError, match="another callback failed"):
        fit(tmp_path, [ExplainCallback(every_n_steps=1), FailsAtStep()], logger=logger)
    assert not [t for t in threading.enumerate() if t.name.startswith("lightning-explain-images")]
    steps = [e.step for e in read_tensorboard(tmp_path / "tb" / "version_0").Images("explain/saliency")]
    assert steps == [0, 1, 2, 3]


class LitSequence(LitCNN):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(40, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)


def test_the_overfit_monitor_draws_no_image_grid_for_sequence_inputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 10, 4, generator=g), torch.arange(32) % 3
    data = DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(
            tmp_path,
            [OverfitMonitor(every_n_steps=2, probe_size=8)],
            model=LitSequence(),
            data=data,
            logger=CSVLogger(tmp_path, name="csv"),
        )
    assert not [w for w in caught if "OverfitMonitor" in str(w.message) and "failed" in str(w.message)]
    assert not [w for w in caught if "skipped the event" in str(w.message)]


# ------------------------------------------------------------------------------------------- 7. smaller
class Regressor(LitCNN):
    def __init__(self) -> None:
        super().__init__(classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.mse_loss(self(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


def regression_data():
    x, y = make_images(32, seed=4)
    return DataLoader(TensorDataset(x, y.float()), batch_size=8), DataLoader(TensorDataset(x[:16], y[:16].float()))


@pytest.mark.parametrize("given", [True, False])
def test_probe_gradient_norms_of_a_regression_with_its_own_loss(tmp_path, given):
    x, y = make_images(8, seed=5)
    probe = (x, y.float()) if given else None
    logger = RecordingLogger()
    callback = GradientNormMonitor(source="probe", probe=probe, loss_fn=F.mse_loss, every_n_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [callback], model=Regressor(), data=regression_data(), logger=logger)
    assert [s for s, _ in logger.series("grad_norm/probe/total")] == [0, 2, 4]


def test_regression_targets_without_a_loss_get_advice_that_leads_somewhere(tmp_path):
    with pytest.raises(MisconfigurationException, match="loss_fn="):
        fit(tmp_path, [GradientNormMonitor(source="probe")], model=Regressor(), data=regression_data())


def test_under_fast_dev_run_the_warning_says_that_it_disables_the_loggers(tmp_path):
    with pytest.warns(UserWarning, match="fast_dev_run"):
        fit(tmp_path, [ExplainCallback()], logger=TensorBoardLogger(tmp_path), fast_dev_run=True)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"steps": -1}),
        ("integrated_gradients", {"method": "simpson"}),
        ("smoothgrad", {"samples": 0}),
        ("smoothgrad", {"noise": -1.0}),
        ("occlusion", {"window": 0}),
        ("occlusion", {"chunk_size": 0}),
    ],
)
def test_invalid_method_option_values_are_refused_in_init(method, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        ExplainCallback(methods=[method], method_options={method: options})


def test_the_schedule_documents_two_optimizers_per_batch():
    doc = ExplainCallback.__mro__[1].__doc__
    assert "two optimizers" in doc and "even steps" in doc
