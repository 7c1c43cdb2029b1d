"""OverfitMonitor in real fits: what it logs, that it changes nothing, its errors, resume and stopping."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, make_images, read_tensorboard, trainer

from lightning_explain import OverfitMonitor
from lightning_explain._compat import MisconfigurationException
from lightning_explain.overfit.detector import Alert

CORE_SCALARS = [
    "train_loss",
    "val_loss",
    "loss_gap",
    "train_accuracy",
    "val_accuracy",
    "accuracy_gap",
    "train_grad_norm",
    "val_grad_norm",
    "grad_alignment",
    "explanation_gap",
    "alert",
]


def fit(tmp_path, callbacks, *, model=None, logger=None, **kwargs):
    train_loader, val_loader = loaders()
    model = model or LitCNN()
    run = trainer(tmp_path, callbacks, logger=logger, **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OverfitMonitor alert")
        run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return run, model


# ------------------------------------------------------------------------------------ constructor
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n_epochs": 0}, "every_n_epochs must be a positive int"),
        ({"every_n_epochs": None, "every_n_steps": None}, "needs a schedule"),
        ({"patience": 0}, "patience must be a positive int"),
        ({"stop_on_alert": "yes"}, "stop_on_alert must be True or False"),
        ({"masks": torch.ones(2, 4, 4)}, "masks must be a dict with keys 'train' and/or 'val'"),
        ({"masks": {"test": torch.ones(2, 4, 4)}}, "keys 'train' and/or 'val'"),
        ({"masks": {"val": [[1]]}}, r"masks\['val'\] must be a tensor"),
        ({"image_samples": -1}, "image_samples must be an int >= 0"),
        ({"min_significance": -1.0}, "min_significance must be a number >= 0"),
        ({"loss_fn": "mse"}, "loss_fn must be callable"),
        ({"train_probe": "data"}, "probe must be a tensor"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OverfitMonitor(**kwargs)


# ------------------------------------------------------------------------------------ what it logs
def test_every_event_logs_the_signals_and_an_alert_scalar(tmp_path):
    logger = RecordingLogger()
    monitor = OverfitMonitor(every_n_steps=2, every_n_epochs=None, probe_size=8)
    run, model = fit(tmp_path, [monitor], logger=logger, max_epochs=2)
    steps = [step for step, _ in logger.series("overfit/alert")]
    assert steps == [0, 2, 4, 6, 8]  # the baseline, then every 2 of the 8 steps
    for name in CORE_SCALARS:
        assert [s for s, _ in logger.series(f"overfit/{name}")] == steps, name
    drift_steps = [s for s, _ in logger.series("overfit/explanation_drift")]
    assert drift_steps == steps[1:]  # needs a previous event
    for (_, train), (_, val), (_, gap) in zip(
        logger.series("overfit/train_loss"),
        logger.series("overfit/val_loss"),
        logger.series("overfit/loss_gap"),
        strict=True,
    ):
        assert gap == pytest.approx(val - train, abs=1e-6)
    assert all(value in (0.0, 1.0) for _, value in logger.series("overfit/alert"))
    assert all(-1 <= value <= 1 for _, value in logger.series("overfit/grad_alignment"))
    assert monitor.probe.inputs.shape[0] == 8 and monitor.train_probe.inputs.shape[0] == 8


def test_the_probes_come_from_the_validation_and_the_training_data(tmp_path):
    monitor = OverfitMonitor(probe_size=5)
    fit(tmp_path, [monitor], max_epochs=1)
    train_images, train_labels = make_images(32, seed=1)  # lit_helpers.loaders' data
    val_images, _ = make_images(16, seed=2)
    assert torch.equal(monitor.train_probe.inputs, train_images[:5])
    assert torch.equal(monitor.train_probe.targets, train_labels[:5])
    assert torch.equal(monitor.probe.inputs, val_images[:5])


def test_the_first_event_logs_the_probe_loss_the_model_has_before_training(tmp_path):
    seed_everything(3)
    model = LitCNN()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    logger = RecordingLogger()
    fit(tmp_path, [OverfitMonitor(probe_size=16)], model=model, logger=logger, max_epochs=1)
    fresh = LitCNN()
    fresh.load_state_dict(reference)
    fresh.eval()
    val_images, val_labels = make_images(16, seed=2)
    expected = torch.nn.functional.cross_entropy(fresh(val_images), val_labels).item()
    assert logger.series("overfit/val_loss")[0] == (0, pytest.approx(expected, rel=1e-5))


def test_masks_give_the_share_of_saliency_inside_the_regions(tmp_path):
    masks = torch.zeros(8, 12, 12, dtype=torch.bool)
    masks[:, :6] = True  # the top half
    logger = RecordingLogger()
    fit(tmp_path, [OverfitMonitor(probe_size=8, masks={"train": masks, "val": masks})], logger=logger, max_epochs=1)
    for name in ("train", "val"):
        shares = [v for _, v in logger.series(f"overfit/{name}_in_mask")]
        assert len(shares) == 2 and all(0 <= v <= 1 for v in shares)
        assert [v for _, v in logger.series(f"overfit/{name}_mask_area")] == [0.5, 0.5]


def test_images_of_both_probes_go_to_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    fit(tmp_path, [OverfitMonitor(probe_size=8, image_samples=4)], logger=logger, max_epochs=1)
    events = read_tensorboard(tmp_path / "tb" / "version_0")
    for tag in ("overfit/train_saliency", "overfit/val_saliency"):
        assert [e.step for e in events.Images(tag)] == [0, 4]


# ------------------------------------------------------------------------------ changes nothing
def test_training_with_the_monitor_ends_with_the_same_weights_and_random_state(tmp_path):
    def run(callbacks):
        seed_everything(5)
        _, model = fit(tmp_path, callbacks, deterministic=True)
        states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
        return model.state_dict(), states

    plain, plain_rng = run([])
    monitored, monitored_rng = run([OverfitMonitor(every_n_steps=1, probe_size=8)])
    for key in plain:  # weights and BatchNorm statistics
        assert torch.equal(plain[key], monitored[key]), key
    assert torch.equal(plain_rng[0], monitored_rng[0])
    assert np.array_equal(plain_rng[1], monitored_rng[1])
    assert plain_rng[2] == monitored_rng[2]


# ------------------------------------------------------------------------------------ fail fast
def test_missing_validation_data_stops_fit_before_the_first_step(tmp_path):
    model = LitCNN()
    train_loader, _ = loaders()
    run = trainer(tmp_path, [OverfitMonitor()])
    with pytest.raises(MisconfigurationException, match=r"val probe.*val_probe=\(inputs, targets\)"):
        run.fit(model, train_dataloaders=train_loader)
    assert model.training_steps == 0


def test_a_probe_without_labels_stops_fit_before_the_first_step(tmp_path):
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match=r"needs class labels for its train probe"):
        fit(tmp_path, [OverfitMonitor(train_probe=torch.randn(4, 1, 12, 12))], model=model)
    assert model.training_steps == 0


def test_masks_that_do_not_match_the_probe_stop_fit_before_the_first_step(tmp_path):
    model = LitCNN()
    monitor = OverfitMonitor(probe_size=8, masks={"val": torch.ones(6, 12, 12, dtype=torch.bool)})
    with pytest.raises(MisconfigurationException, match=r"masks\['val'\] has shape \(6, 12, 12\).*one mask per"):
        fit(tmp_path, [monitor], model=model)
    assert model.training_steps == 0


def test_a_loss_fn_that_reduces_stops_fit_with_the_fix(tmp_path):
    model = LitCNN()
    monitor = OverfitMonitor(loss_fn=torch.nn.functional.cross_entropy)
    with pytest.raises(MisconfigurationException, match="reduction='none'"):
        fit(tmp_path, [monitor], model=model)
    assert model.training_steps == 0


def test_nan_losses_after_training_started_skip_the_event_and_training_goes_on(tmp_path):
    class TurnsNaN(LitCNN):
        def forward(self, x):
            out = super().forward(x)
            return out * float("nan") if self.training_steps >= 3 and not self.training else out

    logger = RecordingLogger()
    model = TurnsNaN()
    with pytest.warns(UserWarning, match="NaN or inf"):
        fit(tmp_path, [OverfitMonitor(every_n_steps=1, probe_size=8)], model=model, logger=logger, max_epochs=1)
    assert model.training_steps == 4
    assert [s for s, _ in logger.series("overfit/val_loss")] == [0, 1, 2]


# ------------------------------------------------------------------------------ alerts and stopping
def forced_alert(monitor: OverfitMonitor) -> None:
    """Make the shortcut rule fire at every event: any learnt model 'looks elsewhere'."""
    monitor.detector.max_mask_ratio = float("inf")
    monitor.detector.first_train_loss = float("inf")


def test_an_alert_is_recorded_warned_and_logged(tmp_path):
    masks = torch.ones(8, 12, 12, dtype=torch.bool)
    monitor = OverfitMonitor(every_n_steps=1, probe_size=8, patience=2, masks={"train": masks})
    forced_alert(monitor)
    logger = RecordingLogger()
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, [monitor], logger=logger, max_epochs=1)
    with pytest.warns(UserWarning, match=r"OverfitMonitor alert at step 1: shortcut.*Look at the training images"):
        run.fit(LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader)
    assert monitor.alerts == [Alert(1, monitor.alerts[0].reason, "shortcut")]  # raised once, at the 2nd event
    assert [v for _, v in logger.series("overfit/alert")] == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_stop_on_alert_stops_training(tmp_path):
    masks = torch.ones(8, 12, 12, dtype=torch.bool)
    monitor = OverfitMonitor(every_n_steps=1, probe_size=8, patience=2, masks={"train": masks}, stop_on_alert=True)
    forced_alert(monitor)
    run, model = fit(tmp_path, [monitor], max_epochs=5)
    assert monitor.alerts[0].step == 1
    assert model.training_steps == 1 and run.global_step == 1  # stopped right after the alerting step


def test_without_stop_on_alert_training_runs_to_the_end(tmp_path):
    masks = torch.ones(8, 12, 12, dtype=torch.bool)
    monitor = OverfitMonitor(every_n_steps=1, probe_size=8, patience=2, masks={"train": masks})
    forced_alert(monitor)
    _, model = fit(tmp_path, [monitor], max_epochs=2)
    assert monitor.alerts and model.training_steps == 8


# ------------------------------------------------------------------------------------ checkpoints
def test_resume_restores_probes_detector_and_alerts(tmp_path):
    masks = torch.ones(8, 12, 12, dtype=torch.bool)
    monitor = OverfitMonitor(probe_size=8, masks={"train": masks})
    forced_alert(monitor)
    run, _ = fit(tmp_path, [monitor], max_epochs=3)
    run.save_checkpoint(tmp_path / "last.ckpt")
    assert monitor.alerts

    resumed = OverfitMonitor(probe_size=8, masks={"train": masks})
    logger = RecordingLogger()
    train_loader, val_loader = loaders()
    again = trainer(tmp_path, [resumed], logger=logger, max_epochs=4)
    again.fit(LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.alerts == monitor.alerts
    assert torch.equal(resumed.train_probe.inputs, monitor.train_probe.inputs)
    assert resumed.detector.state_dict()["first_train_loss"] == float("inf")  # the restored detector
    assert [s for s, _ in logger.series("overfit/alert")] == [16]  # no second baseline, the next epoch only


def test_state_key_differs_per_configuration():
    assert OverfitMonitor().state_key != OverfitMonitor(every_n_steps=5).state_key
    assert OverfitMonitor().state_key != OverfitMonitor(prefix="overfit2").state_key
    assert OverfitMonitor().state_key == OverfitMonitor().state_key


def test_a_run_resumed_after_a_stopping_alert_trains_on(tmp_path):
    masks = torch.ones(8, 12, 12, dtype=torch.bool)
    monitor = OverfitMonitor(every_n_steps=1, probe_size=8, masks={"train": masks}, stop_on_alert=True)
    forced_alert(monitor)
    run, _ = fit(tmp_path, [monitor], max_epochs=5)
    assert run.global_step == 1
    run.save_checkpoint(tmp_path / "stopped.ckpt")

    resumed = OverfitMonitor(every_n_steps=1, probe_size=8, masks={"train": masks}, stop_on_alert=True)
    train_loader, val_loader = loaders()
    again = trainer(tmp_path, [resumed], max_epochs=2)
    model = LitCNN()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OverfitMonitor alert")
        again.fit(
            model, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=tmp_path / "stopped.ckpt"
        )
    assert resumed.alerts == monitor.alerts  # kept, and still active: not raised again
    assert again.global_step >= run.global_step + 4  # a whole epoch more: the old alert does not stop it


def test_a_long_run_with_an_event_at_every_step_does_not_grow(tmp_path):
    """150 events: no tensor, hook or memory left behind (the detector replaces its references, never adds)."""
    from test_leaks import MemoryProbe, MiB
    from toy_models import assert_no_hooks

    from lightning_explain.callbacks._log_writer import MAX_PENDING_IMAGES

    steps = 150
    train_loader, _ = loaders(n_train=8 * steps)
    probe = MemoryProbe(early=30, late=steps)
    val = make_images(16, seed=2)
    monitor = OverfitMonitor(every_n_steps=1, probe_size=8, val_probe=val, masks={"val": torch.ones(16, 12, 12)})
    model = LitCNN()
    run = trainer(tmp_path, [monitor, probe], logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OverfitMonitor alert")
        run.fit(model, train_dataloaders=train_loader)
    assert run.global_step == steps
    (early_tensors, early_resident), (late_tensors, late_resident) = probe.readings[30], probe.readings[steps]
    # A leak would add a tensor or more per event (120 events in between). Images waiting for the writer's
    # thread hold their tensors (two per event, at most MAX_PENDING_IMAGES queued), so the count may differ by that.
    assert late_tensors <= early_tensors + MAX_PENDING_IMAGES
    assert late_resident - early_resident < 30 * MiB
    assert_no_hooks(model)
