"""Guarantees of issue 3 not covered elsewhere: RNG streams, sharded strategies, AMP, faults, resume."""

from __future__ import annotations

import random
import types

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lit_helpers import LitCNN, RecordingLogger, loaders, read_tensorboard, trainer
from torch import nn

import lightning_explain.callbacks.explain_callback as explain_module
from lightning_explain import ExplainCallback, GradientNormMonitor
from lightning_explain.attribution import explain


def every_callback():
    return [
        ExplainCallback(every_n_steps=1),
        GradientNormMonitor(source="probe", every_n_steps=1),
        GradientNormMonitor(every_n_steps=1),
    ]


def fit(tmp_path, callbacks, *, model=None, logger=None, **kwargs):
    train_loader, val_loader = loaders()
    model = model or LitCNN()
    run = trainer(tmp_path, callbacks, logger=logger, **kwargs)
    run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return run, model


# ---------------------------------------------------------------------------------------- RNG streams
def test_global_rng_streams_end_where_they_would_without_the_callbacks(tmp_path):
    """Dropout and shuffling draw from the global generators; the callbacks draw nothing."""

    def final_states(callbacks):
        seed_everything(11)
        fit(tmp_path, callbacks)
        return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()

    plain = final_states([])
    explained = final_states(every_callback())
    assert torch.equal(plain[0], explained[0])
    assert np.array_equal(plain[1], explained[1])
    assert plain[2] == explained[2]


# ---------------------------------------------------------------------------------- sharded strategies
@pytest.mark.parametrize("strategy", [FSDPStrategy, ModelParallelStrategy])
@pytest.mark.parametrize("make_callback", [ExplainCallback, GradientNormMonitor])
def test_sharded_strategies_are_refused_at_setup(strategy, make_callback):
    fake_trainer = types.SimpleNamespace(strategy=strategy(), loggers=[RecordingLogger()])
    with pytest.raises(MisconfigurationException, match=rf"does not support {strategy.__name__}.*strategy='ddp'"):
        make_callback().setup(fake_trainer, LitCNN(), "fit")


def test_data_parallel_strategy_passes_the_setup_check(tmp_path):
    run = trainer(tmp_path, [], strategy="ddp_spawn", devices=1)  # constructed only, not run
    ExplainCallback().setup(run, LitCNN(), "fit")


# ------------------------------------------------------------------------------------- fail fast
class PoolFirst(LitCNN):
    """Pools to 1x1 before any convolution: no layer has spatial output for Grad-CAM."""

    def forward(self, x):
        return self.head(self.features(nn.functional.adaptive_avg_pool2d(x, 1)))


def test_grad_cam_without_a_spatial_layer_stops_fit_before_the_first_step(tmp_path):
    model = PoolFirst()
    with pytest.raises(MisconfigurationException, match=r"Grad-CAM needs a layer with spatial output.*drop 'grad_cam'"):
        fit(tmp_path, [ExplainCallback()], model=model)
    assert model.training_steps == 0
    fit(tmp_path, [ExplainCallback(methods=("saliency",))], model=PoolFirst(), max_epochs=1)  # the fix works


def test_integer_inputs_cannot_be_explained_by_saliency_and_fail_fast(tmp_path):
    model = LitCNN()
    probe = (torch.randint(0, 255, (2, 1, 12, 12)), torch.tensor([0, 1]))
    with pytest.raises(MisconfigurationException, match="float"):
        fit(tmp_path, [ExplainCallback(probe=probe)], model=model)
    assert model.training_steps == 0


# ---------------------------------------------------------------------------------- runtime faults
class FailingLogger(RecordingLogger):
    """Refuses every metric whose name starts with one of ``refuse``."""

    def __init__(self, refuse):
        super().__init__()
        self.refuse = refuse

    def log_metrics(self, metrics, step=None):
        if any(name.startswith(self.refuse) for name in metrics):
            raise OSError("disk full")
        super().log_metrics(metrics, step)


def test_a_logger_that_fails_to_write_never_stops_training(tmp_path):
    logger = FailingLogger(refuse=("explain/", "grad_norm/"))
    model = LitCNN()
    with pytest.warns(UserWarning, match=r"FailingLogger failed to log scalars \(OSError: disk full\)") as record:
        run, _ = fit(tmp_path, every_callback(), model=model, logger=logger)
    assert run.global_step == 8 and model.training_steps == 8
    assert any("val_loss" in m for _, m in logger.metrics)  # the logger keeps getting Lightning's metrics
    per_callback = [str(w.message).split(":")[0] for w in record if "disk full" in str(w.message)]
    assert sorted(per_callback) == ["ExplainCallback", "GradientNormMonitor", "GradientNormMonitor"]  # once each


def test_nan_maps_after_training_started_skip_the_event_and_later_events_log(tmp_path, monkeypatch):
    original = explain_module.compute_explanation
    calls = {"n": 0}

    def nan_at_second_event(*args, **kwargs):
        result = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the dry run (also the baseline at step 0), then the event at step 1
            result.maps = {m: torch.full_like(v, float("nan")) for m, v in result.maps.items()}
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", nan_at_second_event)
    logger = RecordingLogger()
    with pytest.warns(UserWarning, match="NaN or inf at step 1"):
        fit(tmp_path, [ExplainCallback(every_n_steps=1)], logger=logger, max_epochs=1)
    assert [s for s, _ in logger.series("explain/saliency/mean")] == [0, 2, 3, 4]


# ------------------------------------------------------------------------------------ mixed precision
def fp16_plugins():
    return [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_maps_are_float32_under_mixed_precision_and_equal_the_fp32_maps(tmp_path, monkeypatch, precision):
    captured = {}
    original = explain_module.compute_explanation

    def keep(model, inputs, target, layer, methods, **kwargs):  # kwargs: output=, options=
        result = original(model, inputs, target, layer, methods, **kwargs)
        captured.update(model=model, inputs=inputs, target=target, layer=layer, maps=result.maps)
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", keep)
    options = {"precision": "bf16-mixed"} if precision == "bf16-mixed" else {"plugins": fp16_plugins()}
    fit(tmp_path, [ExplainCallback()], max_epochs=1, **options)
    assert all(m.dtype == torch.float32 for m in captured["maps"].values())
    reference = explain(captured["model"], captured["inputs"], captured["target"], layer=captured["layer"])
    for method, maps in reference.items():  # computed outside autocast: identical
        torch.testing.assert_close(captured["maps"][method], maps, rtol=0, atol=0)


class AdamCNN(LitCNN):
    def __init__(self, fused: bool, poison_step: int | None = None):
        super().__init__()
        self.fused = fused
        self.poison_step = poison_step

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.trainer.global_step == self.poison_step:
            loss = loss * float("inf")  # the grad scaler finds inf and skips this optimizer step
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3, fused=self.fused)


def amp_norms(tmp_path, *, fused, amp=True, poison_step=None):
    seed_everything(5)
    logger = RecordingLogger()
    plugins = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16))] if amp else []
    model = AdamCNN(fused, poison_step)
    fit(tmp_path, [GradientNormMonitor(every_n_steps=1)], model=model, logger=logger, plugins=plugins, max_epochs=1)
    return dict(logger.series("grad_norm/train/total"))


def test_train_norms_are_unscaled_also_when_the_optimizer_unscales_in_its_own_step(tmp_path):
    """Lightning skips ``unscale_`` for fused Adam; its gradients are still multiplied by 65536 in the hook."""
    plain = amp_norms(tmp_path, fused=False)
    fused = amp_norms(tmp_path, fused=True)
    fp32 = amp_norms(tmp_path, fused=False, amp=False)
    assert plain.keys() == fused.keys() == {0, 1, 2, 3}
    assert fused[0] == pytest.approx(plain[0], rel=1e-4)  # same gradients before the first update
    assert plain[0] == pytest.approx(fp32[0], rel=0.05)  # the unscaled fp16 gradients match fp32 ones


def test_steps_the_grad_scaler_skips_are_not_logged_as_norms(tmp_path):
    with pytest.warns(UserWarning, match=r"step 1, so the AMP grad scaler skips this optimizer step"):
        norms = amp_norms(tmp_path, fused=False, poison_step=1)
    assert sorted(norms) == [0, 2, 3]
    assert all(np.isfinite(list(norms.values())))


# ---------------------------------------------------------------------------------------- resume
def test_state_key_is_unique_per_configuration():
    variants = [
        ExplainCallback(),
        ExplainCallback(every_n_steps=5),
        ExplainCallback(every_n_epochs=2),
        ExplainCallback(target="predicted"),
        ExplainCallback(color_scale="fixed"),
        ExplainCallback(layer="features.3"),
        ExplainCallback(prefix="other"),
        ExplainCallback(probe_size=4),
    ]
    assert len({c.state_key for c in variants}) == len(variants)
    monitors = [GradientNormMonitor(), GradientNormMonitor(every_n_steps=3), GradientNormMonitor(source="probe")]
    monitors.append(GradientNormMonitor(norm_type=1.0))
    assert len({m.state_key for m in monitors}) == len(monitors)
    assert ExplainCallback(every_n_steps=5).state_key == ExplainCallback(every_n_steps=5).state_key


def test_two_instances_resume_each_with_its_own_state(tmp_path):
    """Two ExplainCallbacks that differ only in schedule and colour scale keep separate checkpoint state."""
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = [ExplainCallback(every_n_steps=2, color_scale="fixed"), ExplainCallback(every_n_steps=3)]
    logger = TensorBoardLogger(tmp_path, name="tb")  # the fixed scale is set when images are drawn
    fit(tmp_path, [*first, checkpoint], logger=logger, max_epochs=1, enable_checkpointing=True)
    assert first[0]._fixed_scales and not first[1]._fixed_scales

    second = [ExplainCallback(every_n_steps=2, color_scale="fixed"), ExplainCallback(every_n_steps=3)]
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, second, logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=2)
    run.fit(LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=checkpoint.last_model_path)
    assert second[0]._fixed_scales == first[0]._fixed_scales  # the run keeps its colour scale
    assert not second[1]._fixed_scales
    assert second[0]._last_event_step == 8 and second[1]._last_event_step == 8


def test_resumed_tensorboard_series_has_no_duplicate_steps(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    fit(
        tmp_path, [ExplainCallback(every_n_steps=3), checkpoint], logger=logger, max_epochs=1, enable_checkpointing=True
    )
    train_loader, val_loader = loaders()
    resumed = trainer(
        tmp_path, [ExplainCallback(every_n_steps=3)], logger=TensorBoardLogger(tmp_path, name="tb", version=0)
    )
    resumed.fit(
        LitCNN(), train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=checkpoint.last_model_path
    )
    steps = [e.step for e in read_tensorboard(tmp_path / "tb" / "version_0").Images("explain/saliency")]
    assert steps == [0, 3, 4, 6, 8]


def test_every_callback_has_a_state_key_per_configuration():
    from lightning_explain import (
        ActivationMaximizationCallback,
        FeatureExplainCallback,
        ModelHistogramMonitor,
        SanityCheckCallback,
        TokenExplainCallback,
    )

    pairs = [
        (TokenExplainCallback(), TokenExplainCallback(methods=("integrated_gradients",))),
        (TokenExplainCallback(), TokenExplainCallback(prefix="text")),
        (TokenExplainCallback(), TokenExplainCallback(embedding="model.embed_tokens")),
        (FeatureExplainCallback(), FeatureExplainCallback(every_n_steps=4)),
        (FeatureExplainCallback(), FeatureExplainCallback(kind="sequence")),
        (ModelHistogramMonitor(), ModelHistogramMonitor(every_n_epochs=2)),
        (ModelHistogramMonitor(), ModelHistogramMonitor(activations=False)),
        (SanityCheckCallback(), SanityCheckCallback(at="fit_start")),
        (SanityCheckCallback(), SanityCheckCallback(methods=("saliency",))),
        (
            ActivationMaximizationCallback(layer="features.3", channels=[0]),
            ActivationMaximizationCallback(layer="features.3", channels=[1]),
        ),
    ]
    for first, second in pairs:
        assert first.state_key != second.state_key
        assert first.state_key == type(first)(**_same_arguments(first)).state_key


def _same_arguments(callback):
    if type(callback).__name__ == "ActivationMaximizationCallback":
        return {"layer": callback.layer, "channels": list(callback.channels)}
    return {}


def test_a_checkpoint_that_kept_whole_previous_maps_still_resumes_the_change_series():
    from lightning_explain.analysis.map_statistics import average_ranks

    maps = torch.rand(2, 4, 4)
    callback = ExplainCallback()
    callback.load_state_dict({"last_event_step": 8, "previous_maps": {"saliency": maps}, "fixed_scales": {}})
    assert torch.equal(callback._change.state_dict()["saliency"], average_ranks(maps.flatten(1)))
    assert "previous_ranks" in callback.state_dict() and "previous_maps" not in callback.state_dict()
