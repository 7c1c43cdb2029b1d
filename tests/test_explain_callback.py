"""ExplainCallback inside real Trainer.fit runs on the CPU."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lit_helpers import LitCNN, RecordingLogger, loaders, make_images, read_tensorboard, trainer
from PIL import Image

import lightning_explain.callbacks.explain_callback as explain_module
from lightning_explain import ExplainCallback
from lightning_explain.attribution import explain

STEPS_PER_EPOCH = 4  # 32 training samples, batches of 8


def fit(tmp_path, callback, *, logger=None, model=None, val=True, **kwargs):
    train_loader, val_loader = loaders()
    model = model or LitCNN()
    run = trainer(tmp_path, [callback], logger=logger, **kwargs)
    run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader if val else None)
    return run, model


def test_tensorboard_gets_images_and_scalars_from_step_zero_to_the_end(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    fit(tmp_path, ExplainCallback(), logger=logger)
    events = read_tensorboard(logger.log_dir)
    expected_steps = [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]  # baseline, then each epoch end
    for method in ("saliency", "grad_cam"):
        images = events.Images(f"explain/{method}")
        assert [e.step for e in images] == expected_steps
        picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 10  # not blank
        for stat in ("concentration", "mean"):
            assert [e.step for e in events.Scalars(f"explain/{method}/{stat}")] == expected_steps
        # change needs a previous event, so it starts at the second one
        assert [e.step for e in events.Scalars(f"explain/{method}/change")] == expected_steps[1:]
        concentration = [e.value for e in events.Scalars(f"explain/{method}/concentration")]
        assert all(0.1 <= c <= 1.0 for c in concentration)
    accuracy = [e.value for e in events.Scalars("explain/probe_accuracy")]
    assert len(accuracy) == 3 and all(0 <= a <= 1 for a in accuracy)


def test_steps_and_epochs_firing_at_one_step_give_one_event(tmp_path):
    logger = RecordingLogger()
    fit(tmp_path, ExplainCallback(every_n_steps=2, every_n_epochs=1), logger=logger)
    steps = [step for step, _ in logger.series("explain/saliency/mean")]
    assert steps == [0, 2, 4, 6, 8]  # epoch ends (4, 8) coincide with step events: logged once


def test_every_n_epochs_none_and_steps_only(tmp_path):
    logger = RecordingLogger()
    fit(tmp_path, ExplainCallback(every_n_steps=3, every_n_epochs=None), logger=logger)
    assert [s for s, _ in logger.series("explain/grad_cam/mean")] == [0, 3, 6]


def test_probe_is_the_first_validation_samples_on_the_training_device(tmp_path):
    callback = ExplainCallback(probe_size=5)
    fit(tmp_path, callback)
    val_images, val_labels = make_images(16, seed=2)
    assert torch.equal(callback.probe.inputs, val_images[:5])
    assert torch.equal(callback.probe.targets, val_labels[:5])
    assert callback.probe.inputs.device.type == "cpu"


def test_probe_falls_back_to_training_data_without_validation(tmp_path):
    callback = ExplainCallback(probe_size=6)
    fit(tmp_path, callback, val=False, limit_val_batches=0)
    train_images, _ = make_images(32, seed=1)
    assert torch.equal(callback.probe.inputs, train_images[:6])  # dataset order, not the shuffled order


def test_user_probe_tensor_without_labels_explains_predictions(tmp_path, monkeypatch):
    inputs, _ = make_images(4, seed=9)
    seen_targets = spy_on_targets(monkeypatch)
    fit(tmp_path, ExplainCallback(probe=inputs))
    assert seen_targets and all(t is None for t in seen_targets)  # None = the predicted class


def spy_on_targets(monkeypatch):
    seen = []
    original = explain_module.compute_explanation

    def spy(model, inputs, target, layer, methods, **kwargs):
        seen.append(target)
        return original(model, inputs, target, layer, methods, **kwargs)

    monkeypatch.setattr(explain_module, "compute_explanation", spy)
    return seen


@pytest.mark.parametrize(("target", "expected"), [(None, "labels"), ("label", "labels"), ("predicted", None), (2, 2)])
def test_target_choice(tmp_path, monkeypatch, target, expected):
    seen_targets = spy_on_targets(monkeypatch)
    callback = ExplainCallback(target=target, probe_size=4)
    fit(tmp_path, callback, max_epochs=1)
    for seen in seen_targets:
        if expected == "labels":
            assert torch.equal(seen, callback.probe.targets)
        else:
            assert seen == expected


@pytest.mark.parametrize("options", [{}, {"accumulate_grad_batches": 2}, {"precision": "bf16-mixed"}])
def test_training_with_the_callbacks_ends_with_the_same_weights(tmp_path, options):
    """Choosing the probe and explaining draws no random numbers and touches no state."""
    from lightning_explain import GradientNormMonitor

    def run(callbacks):
        seed_everything(7)
        model = LitCNN()
        train_loader, val_loader = loaders()
        run = trainer(tmp_path, callbacks, deterministic=True, **options)
        run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
        return model.state_dict(), run.optimizers[0].state_dict()["state"]

    plain, plain_optimizer = run([])
    explained, explained_optimizer = run(
        [
            ExplainCallback(every_n_steps=1),
            GradientNormMonitor(source="probe", every_n_steps=1),
            GradientNormMonitor(every_n_steps=1),
        ]
    )
    assert plain.keys() == explained.keys()
    for key in plain:  # weights and BatchNorm statistics
        assert torch.equal(plain[key], explained[key]), key
    for index, state in plain_optimizer.items():
        assert torch.equal(state["momentum_buffer"], explained_optimizer[index]["momentum_buffer"])


def test_no_logger_is_an_error_at_setup(tmp_path):
    model = LitCNN()
    with pytest.raises(MisconfigurationException, match="no logger"):
        fit(tmp_path, ExplainCallback(), logger=False, model=model)
    assert model.training_steps == 0


def test_logger_without_images_warns_once_and_still_logs_scalars(tmp_path):
    logger = RecordingLogger()  # no log_dir or save_dir: nowhere to put images (CSVLogger gets PNG files)
    with pytest.warns(UserWarning, match="can take images") as record:
        fit(tmp_path, ExplainCallback(), logger=logger)
    assert sum("can take images" in str(w.message) for w in record) == 1
    assert logger.series("explain/saliency/concentration") and logger.series("explain/grad_cam/change")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(layer="featurs.3"), r"featurs\.3.*Did you mean 'features\.3'"),
        (dict(target="label", probe=torch.randn(2, 1, 12, 12)), "needs a probe with class labels"),
        (dict(target=7), "out of range"),
        (dict(probe=torch.randn(2, 1, 12)), r"images and needs probe inputs of shape \(N, C, H, W\)"),
        (dict(probe=torch.randn(2, 1, 12), methods=("saliency",)), r"needs probe inputs of shape \(N, C, H, W\)"),
    ],
)
def test_bad_configuration_stops_fit_before_the_first_step(tmp_path, kwargs, message):
    model = LitCNN()
    with pytest.raises((ValueError, MisconfigurationException), match=message):
        fit(tmp_path, ExplainCallback(**kwargs), model=model)
    assert model.training_steps == 0


def test_batches_that_cannot_be_unpacked_fail_fast_and_unpack_batch_fixes_them(tmp_path):
    class DictDataset(torch.utils.data.Dataset):
        def __init__(self):
            self.images, self.labels = make_images(16, seed=3)

        def __len__(self):
            return 16

        def __getitem__(self, i):
            return {"pixels": self.images[i], "cls": self.labels[i]}

    class DictModule(LitCNN):
        def training_step(self, batch, batch_idx):
            return super().training_step((batch["pixels"], batch["cls"]), batch_idx)

    data = torch.utils.data.DataLoader(DictDataset(), batch_size=8)
    model = DictModule()
    with pytest.raises(MisconfigurationException, match="unpack_batch"):
        trainer(tmp_path, [ExplainCallback()]).fit(model, train_dataloaders=data)
    assert model.training_steps == 0

    callback = ExplainCallback(unpack_batch=lambda b: (b["pixels"], b["cls"]), probe_size=3)
    trainer(tmp_path, [callback], max_epochs=1).fit(DictModule(), train_dataloaders=data)
    assert torch.equal(callback.probe.targets, DictDataset().labels[:3])


def test_a_failure_after_training_started_is_a_warning_and_training_goes_on(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = explain_module.compute_explanation

    def fails_after_dry_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    monkeypatch.setattr(explain_module, "compute_explanation", fails_after_dry_run)
    model = LitCNN()
    with pytest.warns(UserWarning, match="skipped the event at step 2 after RuntimeError: boom") as record:
        fit(tmp_path, ExplainCallback(every_n_steps=2), model=model)
    assert model.training_steps == 2 * STEPS_PER_EPOCH
    assert sum("boom" in str(w.message) for w in record) == 1  # once per kind of error


def test_nonfinite_maps_are_skipped_with_a_warning(tmp_path, monkeypatch):
    original = explain_module.compute_explanation

    def nan_maps(*args, **kwargs):
        result = original(*args, **kwargs)
        result.maps["saliency"] = torch.full_like(result.maps["saliency"], float("nan"))
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", nan_maps)
    logger = RecordingLogger()
    with pytest.warns(UserWarning, match="saliency maps hold NaN"):
        fit(tmp_path, ExplainCallback(), logger=logger, max_epochs=1)
    assert logger.series("explain/saliency/mean") == []
    assert len(logger.series("explain/grad_cam/mean")) == 2


def test_fixed_color_scale_is_set_once_and_saved(tmp_path, monkeypatch):
    scales = []
    original = explain_module.render_explanation_grid

    def spy(inputs, maps, **kwargs):
        scales.append(kwargs["scale"])
        return original(inputs, maps, **kwargs)

    monkeypatch.setattr(explain_module, "render_explanation_grid", spy)
    callback = ExplainCallback(color_scale="fixed", methods=("saliency",), every_n_steps=2)
    fit(tmp_path, callback, logger=TensorBoardLogger(tmp_path))
    assert len(scales) == 5 and len(set(scales)) == 1 and scales[0] > 0
    assert callback.state_dict()["fixed_scales"] == {"saliency": scales[0]}


def test_per_image_scale_is_the_default(tmp_path, monkeypatch):
    scales = []
    original = explain_module.render_explanation_grid
    monkeypatch.setattr(
        explain_module, "render_explanation_grid", lambda i, m, **k: scales.append(k["scale"]) or original(i, m, **k)
    )
    fit(tmp_path, ExplainCallback(), logger=TensorBoardLogger(tmp_path), max_epochs=1)
    assert scales and set(scales) == {"per_image"}


def test_resume_from_a_checkpoint_continues_the_same_series(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    logger = RecordingLogger()
    first = ExplainCallback(every_n_steps=2, probe_size=4)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, [first, checkpoint], logger=logger, max_epochs=1, enable_checkpointing=True)
    run.fit(LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader)

    resumed_logger = RecordingLogger()
    second = ExplainCallback(every_n_steps=2, probe_size=4, probe=torch.zeros(4, 1, 12, 12))
    run = trainer(tmp_path, [second], logger=resumed_logger, max_epochs=2)
    last = str(tmp_path / "ckpt" / "last.ckpt")
    run.fit(LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=last)
    assert torch.equal(second.probe.inputs, first.probe.inputs)  # the saved probe wins over a new one
    steps = [s for s, _ in resumed_logger.series("explain/saliency/mean")]
    assert steps == [6, 8]  # no duplicate of step 4, no new baseline
    assert [s for s, _ in resumed_logger.series("explain/saliency/change")] == [6, 8]  # compares with step 4


def test_state_key_differs_between_configurations():
    assert ExplainCallback().state_key != ExplainCallback(methods=("saliency",)).state_key
    assert ExplainCallback().state_key == ExplainCallback().state_key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(methods=("saliency", "lime")), r"Unknown method.*'lime'.*valid choices(?=.*'saliency')(?=.*'grad_cam')"),
        (dict(methods=()), "at least one method"),
        (dict(every_n_steps=0), "every_n_steps must be a positive int"),
        (dict(every_n_epochs=-1), "every_n_epochs must be a positive int"),
        (dict(probe_size=0), "probe_size must be a positive int"),
        (dict(color_scale="global"), "color_scale must be one of"),
        (dict(colormap="rainbow"), "colormap must be one of"),
        (dict(overlay_alpha=1.5), "overlay_alpha"),
        (dict(target="random"), "target must be"),
        (dict(probe="images.pt"), "probe must be a tensor"),
        (dict(unpack_batch=3), "unpack_batch must be callable"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExplainCallback(**kwargs)


def test_maps_logged_match_the_pure_function(tmp_path, monkeypatch):
    """The callback orchestrates; the numbers are those of attribution.explain on the probe."""
    captured = {}
    original = explain_module.compute_explanation

    def keep_last(model, inputs, target, layer, methods, **kwargs):
        result = original(model, inputs, target, layer, methods, **kwargs)
        captured.update(model=model, inputs=inputs, target=target, maps=result.maps)
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", keep_last)
    fit(tmp_path, ExplainCallback(layer="features.3"), max_epochs=1)
    with warnings.catch_warnings():
        reference = explain(captured["model"], captured["inputs"], captured["target"], layer="features.3")
    for method, maps in reference.items():
        torch.testing.assert_close(captured["maps"][method], maps)


def test_attribution_functions_work_inside_a_validation_step(tmp_path):
    """Validation runs under no_grad inside fit and under inference_mode in trainer.validate."""
    from lightning_explain.attribution import grad_cam, saliency

    class ExplainsInValidation(LitCNN):
        def __init__(self):
            super().__init__()
            self.seen = []

        def validation_step(self, batch, batch_idx):
            x, y = batch
            assert not torch.is_grad_enabled()
            maps = explain(self, x, y)
            assert torch.equal(maps["saliency"], saliency(self, x, y))
            assert torch.equal(maps["grad_cam"], grad_cam(self, x, y))
            assert maps["saliency"].shape == (8, 12, 12) and maps["saliency"].abs().sum() > 0
            self.seen.append(torch.is_inference_mode_enabled())

    model = ExplainsInValidation()
    run = trainer(tmp_path, [], max_epochs=1)
    train_loader, val_loader = loaders()
    run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    run.validate(model, val_loader, verbose=False)
    assert model.seen == [False, False, True, True]  # two batches in fit (no_grad), two in validate
