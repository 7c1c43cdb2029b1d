"""The callbacks work with a ``lightning.pytorch`` Trainer and with a ``pytorch_lightning`` Trainer."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from lit_helpers import loaders, read_tensorboard
from torch import nn

import lightning_explain._compat as compat
from lightning_explain import ExplainCallback, GradientNormMonitor

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]


def namespace(name: str):
    """The Trainer package ``name``; the test is skipped where ``pytorch_lightning`` is not installed."""
    return pytest.importorskip(name) if name == "pytorch_lightning" else importlib.import_module(name)


def cnn_class(ns):
    """A small CNN LightningModule class of namespace ``ns`` (a Trainer rejects the other namespace's modules)."""

    class CNN(ns.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

        def forward(self, x):
            return self.head(self.features(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return CNN


def quiet_trainer(ns, tmp_path, callbacks, **kwargs):
    options = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        logger=ns.loggers.TensorBoardLogger(tmp_path, name="tb"),
        callbacks=callbacks,
    )
    options.update(kwargs)
    return ns.Trainer(**options)


@pytest.mark.parametrize("name", NAMESPACES)
def test_every_callback_logs_under_the_trainer_of_either_namespace(tmp_path, name):
    ns = namespace(name)
    callbacks = [
        ExplainCallback(every_n_steps=2, every_n_epochs=None, methods=("saliency", "grad_cam"), probe_size=4),
        GradientNormMonitor(source="train", every_n_epochs=None, every_n_steps=2),
        GradientNormMonitor(source="probe", every_n_epochs=None, every_n_steps=2, probe_size=8, log_histogram=True),
    ]
    assert all(isinstance(cb, ns.Callback) for cb in callbacks)
    train, val = loaders(n_train=32, n_val=8, batch_size=8)  # 4 steps per epoch, 8 in all
    run = quiet_trainer(ns, tmp_path, callbacks)
    run.fit(cnn_class(ns)(), train_dataloaders=train, val_dataloaders=val)

    events = read_tensorboard(run.logger.log_dir)
    steps = lambda series: [event.step for event in series]  # noqa: E731
    for method in ("saliency", "grad_cam"):
        assert steps(events.Images(f"explain/{method}")) == [0, 2, 4, 6, 8]
        assert steps(events.Scalars(f"explain/{method}/concentration")) == [0, 2, 4, 6, 8]
    assert steps(events.Scalars("grad_norm/train/total")) == [0, 2, 4, 6]  # read before each optimizer step
    assert steps(events.Scalars("grad_norm/probe/total")) == [0, 2, 4, 6, 8]
    assert steps(events.Histograms("grad_norm/probe/layers")) == [0, 2, 4, 6, 8]
    assert all(event.value > 0 for event in events.Scalars("grad_norm/train/features.0-Conv2d"))

    state = run._checkpoint_connector.dump_checkpoint()["callbacks"]  # the Trainer saves their state
    assert {cb.state_key for cb in callbacks} <= state.keys()


@pytest.mark.parametrize("name", NAMESPACES)
def test_a_single_callback_and_configuration_errors_are_understood_by_either_namespace(tmp_path, name):
    ns = namespace(name)
    callback = GradientNormMonitor()
    assert quiet_trainer(ns, tmp_path, callback).callbacks.count(callback) == 1  # isinstance(callback, Callback)

    errors = importlib.import_module(f"{name}.utilities.exceptions")
    run = quiet_trainer(ns, tmp_path, [ExplainCallback()], logger=False)
    with pytest.raises(errors.MisconfigurationException, match="no logger"):
        run.fit(cnn_class(ns)(), train_dataloaders=loaders()[0])


def test_the_standalone_namespace_is_optional(monkeypatch):
    assert compat.CALLBACK_BASES[0].__module__.startswith("lightning.pytorch")
    assert compat._with_standalone(int, "no_such_package_lightning_explain", "Callback") == (int,)

    def broken_install(module):
        raise RuntimeError(f"{module} is broken")

    monkeypatch.setattr(compat.importlib, "import_module", broken_install)
    assert compat._with_standalone(int, "pytorch_lightning", "Callback") == (int,)
