"""GradientNormMonitor inside real Trainer.fit runs on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lit_helpers import LitCNN, RecordingLogger, loaders, make_images, read_tensorboard, trainer

from lightning_explain import GradientNormMonitor

LAYERS = ["features.0", "features.1", "features.3", "head.3"]  # the modules of LitCNN that own parameters
TAGS = {"features.0": "features.0-Conv2d", "features.1": "features.1-BatchNorm2d", "features.3": "features.3-Conv2d"}
TAGS |= {"head.3": "head.3-Linear", "total": "total"}  # each layer's tag: its name and its type


def module_norm(module: torch.nn.Module, norm_type: float, grads=None) -> float:
    """Reference: the norm of all the module's own gradients, concatenated."""
    params = list(module.parameters(recurse=False))
    flat = torch.cat([(grads[p] if grads else p.grad).flatten() for p in params])
    return torch.linalg.vector_norm(flat, norm_type).item()


class RecordTrainNorms(Callback):
    """Computes reference norms from ``.grad`` right where the monitor reads them."""

    def __init__(self, norm_type: float) -> None:
        self.norm_type = norm_type
        self.norms: dict[int, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        modules = dict(pl_module.named_modules())
        norms = {name: module_norm(modules[name], self.norm_type) for name in LAYERS}
        everything = torch.cat([p.grad.flatten() for p in pl_module.parameters()])
        norms["total"] = torch.linalg.vector_norm(everything, self.norm_type).item()
        self.norms[trainer.global_step] = norms


def fit(tmp_path, callbacks, *, logger=None, model=None, **kwargs):
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, callbacks, logger=logger, **kwargs)
    run.fit(model or LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader)
    return run


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_train_norms_equal_the_norms_of_the_real_gradients(tmp_path, norm_type):
    logger = RecordingLogger()
    reference = RecordTrainNorms(norm_type)
    fit(tmp_path, [reference, GradientNormMonitor(every_n_steps=1, norm_type=norm_type)], logger=logger)
    logged = {step: m for step, m in logger.metrics if "grad_norm/train/total" in m}
    assert sorted(logged) == list(range(8))
    for step, norms in reference.norms.items():
        for name, value in norms.items():
            assert math.isclose(logged[step][f"grad_norm/train/{TAGS[name]}"], value, rel_tol=1e-5), (step, name)


@pytest.mark.parametrize(
    ("source", "kwargs", "steps"),
    [
        # 2 epochs of 4 steps. Training gradients are read before the optimizer step: the first step (0)
        # and each epoch's last step (3, 7); probe gradients after it: the baseline, then steps 4 and 8.
        ("train", {}, [0, 3, 7]),
        ("probe", {}, [0, 4, 8]),
        ("train", {"every_n_steps": 2}, [0, 2, 3, 4, 6, 7]),
        ("train", {"every_n_epochs": 2}, [0, 7]),
        ("train", {"every_n_epochs": None, "every_n_steps": 3}, [0, 3, 6]),
        ("probe", {"every_n_epochs": None}, [0]),
    ],
)
def test_the_default_schedule_logs_at_the_start_and_at_every_epochs_end(tmp_path, source, kwargs, steps):
    logger = RecordingLogger()
    fit(tmp_path, [GradientNormMonitor(source=source, **kwargs)], logger=logger, log_every_n_steps=50)
    assert [s for s, _ in logger.series(f"grad_norm/{source}/total")] == steps


def test_epoch_ends_with_accumulated_gradients(tmp_path):
    logger = RecordingLogger()  # 4 batches an epoch, 3 accumulated: optimizer steps after batches 3 and 4
    fit(tmp_path, [GradientNormMonitor()], logger=logger, accumulate_grad_batches=3)
    assert [s for s, _ in logger.series("grad_norm/train/total")] == [0, 1, 3]


@pytest.mark.parametrize(
    ("max_epochs", "kwargs", "warns"), [(1, {}, True), (2, {}, False), (1, {"every_n_steps": 1}, False)]
)
def test_a_run_with_fewer_than_three_events_gets_a_note(tmp_path, max_epochs, kwargs, warns):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [GradientNormMonitor(**kwargs)], max_epochs=max_epochs)
    notes = [str(w.message) for w in caught if "too few for a curve" in str(w.message)]
    assert notes == (
        [
            "GradientNormMonitor: this run will log gradient norms at only 2 step(s) (0, 3), too few for a "
            "curve. Set every_n_steps= (e.g. every_n_steps=1) for more points."
        ]
        if warns
        else []
    )


def test_accumulated_gradients_are_read_once_per_optimizer_step(tmp_path):
    logger = RecordingLogger()
    reference = RecordTrainNorms(2.0)
    monitor = GradientNormMonitor(every_n_steps=1)
    fit(tmp_path, [reference, monitor], logger=logger, accumulate_grad_batches=2)
    assert [s for s, _ in logger.series("grad_norm/train/total")] == [0, 1, 2, 3]
    for step, value in logger.series("grad_norm/train/total"):
        assert math.isclose(value, reference.norms[step]["total"], rel_tol=1e-5)


def test_frozen_layers_are_left_out(tmp_path):
    model = LitCNN()
    model.features[0].requires_grad_(False)
    logger = RecordingLogger()
    fit(tmp_path, [GradientNormMonitor(every_n_steps=1)], logger=logger, model=model, max_epochs=1)
    keys = set().union(*(m.keys() for _, m in logger.metrics))
    assert "grad_norm/train/features.0-Conv2d" not in keys and "grad_norm/train/features.3-Conv2d" in keys


def test_histogram_of_layer_norms_in_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    fit(tmp_path, [GradientNormMonitor(every_n_epochs=None, every_n_steps=2, log_histogram=True)], logger=logger)
    events = read_tensorboard(logger.log_dir)
    histograms = events.Histograms("grad_norm/train/layers")
    assert [h.step for h in histograms] == [0, 2, 4, 6]
    assert histograms[0].histogram_value.num == len(LAYERS)
    assert [e.step for e in events.Scalars("grad_norm/train/head.3-Linear")] == [0, 2, 4, 6]


def test_no_histogram_by_default(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    fit(tmp_path, [GradientNormMonitor()], logger=logger)
    tags = read_tensorboard(logger.log_dir).Tags()
    assert tags["histograms"] == [] and "grad_norm/train/features.1-BatchNorm2d" in tags["scalars"]


class SnapshotGrads(Callback):
    """Copies every ``.grad`` in on_train_batch_end (placed before and after the monitor)."""

    def __init__(self) -> None:
        self.snapshots: list[list[torch.Tensor | None]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.snapshots.append([None if p.grad is None else p.grad.clone() for p in pl_module.parameters()])


def test_probe_norms_are_loss_gradients_on_the_probe_and_leave_grad_alone(tmp_path):
    logger = RecordingLogger()
    before, after = SnapshotGrads(), SnapshotGrads()
    monitor = GradientNormMonitor(source="probe", every_n_steps=1, probe_size=6)
    model = LitCNN()
    fit(tmp_path, [before, monitor, after], logger=logger, model=model, max_epochs=1)
    assert [s for s, _ in logger.series("grad_norm/probe/total")] == [0, 1, 2, 3, 4]
    for grads_before, grads_after in zip(before.snapshots, after.snapshots, strict=True):
        for a, b in zip(grads_before, grads_after, strict=True):
            assert torch.equal(a, b)
    # the last event (step 4) against a hand computation on the final weights, in eval mode
    images, labels = make_images(16, seed=2)
    model.eval()
    loss = F.cross_entropy(model(images[:6]), labels[:6])
    params = dict(model.named_parameters())
    grads = dict(zip(params.values(), torch.autograd.grad(loss, list(params.values())), strict=True))
    modules = dict(model.named_modules())
    last = [m for _, m in logger.metrics if "grad_norm/probe/total" in m][-1]
    for name in LAYERS:
        assert math.isclose(last[f"grad_norm/probe/{TAGS[name]}"], module_norm(modules[name], 2.0, grads), rel_tol=1e-5)


def test_probe_with_a_custom_loss(tmp_path):
    logger = RecordingLogger()
    calls = []

    def loss_fn(logits, targets):
        calls.append(logits.shape)
        return F.cross_entropy(logits, targets, label_smoothing=0.1)

    fit(tmp_path, [GradientNormMonitor(source="probe", loss_fn=loss_fn, probe_size=4)], logger=logger, max_epochs=1)
    assert calls and all(shape == (4, 3) for shape in calls)


def test_probe_without_targets_fails_before_the_first_step(tmp_path):
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match="needs a probe with targets"):
        fit(tmp_path, [GradientNormMonitor(source="probe", probe=torch.randn(4, 1, 12, 12))], model=model)
    assert model.training_steps == 0


def test_no_logger_is_an_error_at_setup(tmp_path):
    with pytest.raises(MisconfigurationException, match="no logger"):
        fit(tmp_path, [GradientNormMonitor()], logger=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(source="validation"), r"source must be one of \['train', 'probe'\]"),
        (dict(every_n_steps=0), "every_n_steps must be a positive int"),
        (dict(norm_type=0), "norm_type must be a positive number"),
        (dict(norm_type="fro"), "norm_type must be a positive number"),
        (dict(probe_size=-2), "probe_size must be a positive int"),
        (dict(loss_fn="mse"), "loss_fn must be callable"),
        (dict(probe=torch.zeros(2, 1, 4, 4)), "only used with source='probe'"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradientNormMonitor(**kwargs)


def test_nonfinite_gradients_are_not_logged_as_norms(tmp_path):
    class Poison(Callback):
        """Makes one gradient NaN at step 1 for the monitor, and restores it after (``heal``)."""

        saved = None

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 1:
                grad = next(pl_module.parameters()).grad
                Poison.saved = grad.clone()
                grad.fill_(float("nan"))

    class Heal(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if Poison.saved is not None:
                next(pl_module.parameters()).grad.copy_(Poison.saved)
                Poison.saved = None

    logger = RecordingLogger()
    callbacks = [Poison(), GradientNormMonitor(every_n_steps=1), Heal()]
    with pytest.warns(UserWarning, match="NaN or inf at step 1"):
        fit(tmp_path, callbacks, logger=logger, max_epochs=1)
    assert [s for s, _ in logger.series("grad_norm/train/total")] == [0, 2, 3]
