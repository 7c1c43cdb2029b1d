"""Issue 13, item 1: one callback instance used for a second fit (k-fold loops, sweeps, notebooks)."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lit_helpers import LitCNN, MonteCarloTable, RecordingLogger, make_images, read_tensorboard, trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import (
    ActivationMaximizationCallback,
    ExplainCallback,
    FeatureExplainCallback,
    GradientNormMonitor,
    ModelHistogramMonitor,
    OverfitMonitor,
    SanityCheckCallback,
)


def image_data(seed: int):
    train = TensorDataset(*make_images(32, seed=seed))
    val = TensorDataset(*make_images(16, seed=seed + 100))
    return DataLoader(train, batch_size=8), DataLoader(val, batch_size=8)


def table_data(seed: int):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(48, 6, generator=g), torch.arange(48) % 3
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)


def fit(tmp_path, callback, logger, data, model=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = trainer(tmp_path, [callback], logger=logger, max_epochs=1, **kwargs)
        run.fit(model or LitCNN(), *data)
    return run


def first_val_inputs(data, n):
    return data[1].dataset.tensors[0][:n]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExplainCallback(every_n_steps=2),
        lambda: ExplainCallback(every_n_steps=2, layer="features.3"),
        lambda: GradientNormMonitor(source="probe", every_n_steps=2),
    ],
)
def test_a_second_fit_explains_its_own_data_from_a_step_0_baseline(tmp_path, make):
    callback = make()
    first, second = RecordingLogger(), RecordingLogger()
    fit(tmp_path, callback, first, image_data(1))
    fit(tmp_path, callback, second, image_data(2))  # a new model, new data: no error
    assert torch.equal(callback.probe.inputs, first_val_inputs(image_data(2), callback.probe_size))
    steps = sorted({step for step, _ in second.metrics})
    assert steps[0] == 0
    assert [s for s, _ in first.metrics] == [s for s, _ in second.metrics]  # the same series, from the start
    change = [step for step, metrics in second.metrics if "explain/saliency/change" in metrics]
    assert 0 not in change  # not compared with the first run's maps


def test_a_second_fit_of_feature_explain_starts_a_fresh_series(tmp_path):
    callback = FeatureExplainCallback(every_n_steps=2)
    first, second = RecordingLogger(), RecordingLogger()
    fit(tmp_path, callback, first, table_data(1), model=MonteCarloTable())
    fit(tmp_path, callback, second, table_data(2), model=MonteCarloTable())
    assert torch.equal(callback.probe.inputs, first_val_inputs(table_data(2), 16))
    assert second.metrics[0][0] == 0 and not any("change" in key for key in second.metrics[0][1])


def test_a_second_fit_of_the_overfit_monitor_logs_again_with_a_fresh_detector(tmp_path):
    monitor = OverfitMonitor(every_n_steps=2, probe_size=8)
    first, second = RecordingLogger(), RecordingLogger()
    fit(tmp_path, monitor, first, image_data(1))
    monitor._alerts.append(monitor.alerts[0] if monitor.alerts else ("placeholder",))
    fit(tmp_path, monitor, second, image_data(2))
    assert [s for s, _ in second.series("overfit/train_loss")] == [s for s, _ in first.series("overfit/train_loss")]
    assert monitor.alerts == [] and monitor.detector.best["step"] in {s for s, _ in second.series("overfit/val_loss")}
    assert torch.equal(monitor.train_probe.inputs, image_data(2)[0].dataset.tensors[0][:8])


def test_a_second_fit_runs_the_sanity_check_again(tmp_path):
    callback = SanityCheckCallback()
    first, second = RecordingLogger(), RecordingLogger()
    fit(tmp_path, callback, first, image_data(1))
    fit(tmp_path, callback, second, image_data(2))
    assert second.series("sanity_check/saliency/passed")


def test_a_second_fit_maximises_activations_again(tmp_path):
    callback = ActivationMaximizationCallback(layer="features.3", channels=[0], steps=2)
    fit(tmp_path, callback, CSVLogger(tmp_path, name="a"), image_data(1))
    fit(tmp_path, callback, CSVLogger(tmp_path, name="b"), image_data(2))
    assert (tmp_path / "b" / "version_0" / "activation_max" / "features.3" / "step_0.png").exists()


def test_a_second_fit_logs_histograms_from_step_0(tmp_path):
    callback = ModelHistogramMonitor(every_n_steps=2)
    fit(tmp_path, callback, TensorBoardLogger(tmp_path, name="a", version=0), image_data(1))
    fit(tmp_path, callback, TensorBoardLogger(tmp_path, name="b", version=0), image_data(2))
    accumulator = read_tensorboard(tmp_path / "b" / "version_0")
    assert [e.step for e in accumulator.Histograms("model/weights/features.0.weight")][0] == 0


def test_fit_continued_on_the_same_trainer_keeps_the_series(tmp_path):
    callback = ExplainCallback(every_n_steps=2)
    logger = RecordingLogger()
    run = fit(tmp_path, callback, logger, image_data(1))
    probe = callback.probe.inputs.clone()
    run.fit_loop.max_epochs = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.fit(run.lightning_module, *image_data(2))
    steps = [s for s, m in logger.metrics if "explain/saliency/mean" in m]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps.count(0) == 1 and steps[-1] == 8
    assert torch.equal(callback.probe.inputs, probe)
    assert 6 in [s for s, m in logger.metrics if "explain/saliency/change" in m]
