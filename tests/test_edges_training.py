"""Issue 13, item 0: models and setups where the callbacks used to change training without a word."""

from __future__ import annotations

import errno
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lit_helpers import LitCNN, MonteCarloTable, loaders, trainer
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lightning_explain import (
    ActivationMaximizationCallback,
    ExplainCallback,
    FeatureExplainCallback,
    GradientNormMonitor,
    ModelHistogramMonitor,
    OverfitMonitor,
    SanityCheckCallback,
)


class MonteCarloCNN(LitCNN):
    """Draws dropout noise also in eval mode (Monte-Carlo dropout), like noise layers and VAE sampling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(self.features(x), 0.3, training=True))


def table_loaders():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 6, generator=g)
    y = torch.arange(48) % 3
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), DataLoader(TensorDataset(x[:16], y[:16]))


IMAGE_CALLBACKS = {
    "explain": lambda: ExplainCallback(every_n_steps=1),
    "grad_norm_probe": lambda: GradientNormMonitor(source="probe", every_n_steps=1),
    "grad_norm_train": lambda: GradientNormMonitor(every_n_steps=1),
    "overfit": lambda: OverfitMonitor(every_n_steps=2, probe_size=8),
    "activation_max": lambda: ActivationMaximizationCallback(layer="features.3", channels=[0], steps=2),
    "sanity": lambda: SanityCheckCallback(at="fit_start"),
    "histograms": lambda: ModelHistogramMonitor(every_n_steps=1),
}


def run_to_the_end(tmp_path, callbacks, make_model, make_loaders, **kwargs):
    """Seeded fit; the final weights and every global RNG stream."""
    seed_everything(5)
    model = make_model()
    train_loader, val_loader = make_loaders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, callbacks, max_epochs=1, **kwargs).fit(model, train_loader, val_loader)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return weights, torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_same_run(plain, explained):
    assert plain[0].keys() == explained[0].keys()
    for name in plain[0]:
        assert torch.equal(plain[0][name], explained[0][name]), name
    assert torch.equal(plain[1], explained[1])
    assert np.array_equal(plain[2], explained[2])
    assert plain[3] == explained[3]


@pytest.mark.parametrize("name", list(IMAGE_CALLBACKS))
def test_a_model_that_draws_random_numbers_in_eval_mode_trains_the_same(tmp_path, name):
    plain = run_to_the_end(tmp_path, [], MonteCarloCNN, loaders)
    explained = run_to_the_end(tmp_path, [IMAGE_CALLBACKS[name]()], MonteCarloCNN, loaders)
    assert_same_run(plain, explained)


def test_a_tabular_model_that_draws_random_numbers_in_eval_mode_trains_the_same(tmp_path):
    plain = run_to_the_end(tmp_path, [], MonteCarloTable, table_loaders)
    explained = run_to_the_end(tmp_path, [FeatureExplainCallback(every_n_steps=1)], MonteCarloTable, table_loaders)
    assert_same_run(plain, explained)


class EMASwapCNN(LitCNN):
    """``eval()`` swaps exponential-moving-average weights in, ``train()`` swaps the live weights back."""

    def __init__(self) -> None:
        super().__init__()
        self.ema = [p.detach().clone() for p in self.parameters()]
        self.swapped = False

    def _swap(self) -> None:
        with torch.no_grad():
            for parameter, shadow in zip(self.parameters(), self.ema, strict=True):
                live = parameter.detach().clone()
                parameter.copy_(shadow)
                shadow.copy_(live)
        self.swapped = not self.swapped

    def train(self, mode: bool = True):
        if mode == self.swapped:  # eval() while live, or train() while the EMA weights are in
            self._swap()
        return super().train(mode)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        assert not self.swapped, "a training step ran on the EMA weights"
        return super().training_step(batch, batch_idx)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            for parameter, shadow in zip(self.parameters(), self.ema, strict=True):
                shadow.mul_(0.9).add_(parameter.detach(), alpha=0.1)


@pytest.mark.parametrize("name", ["explain", "grad_norm_probe", "overfit", "histograms"])
def test_a_model_whose_train_and_eval_swap_weights_trains_on_its_live_weights(tmp_path, name):
    plain = run_to_the_end(tmp_path, [], EMASwapCNN, loaders)
    explained = run_to_the_end(tmp_path, [IMAGE_CALLBACKS[name]()], EMASwapCNN, loaders)
    assert_same_run(plain, explained)


class LazyCNN(LitCNN):
    """Its convolution and head are lazy: materialised, from the global RNG, at the first forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.features[0] = nn.LazyConv2d(6, 3, padding=1)
        self.head[-1] = nn.LazyLinear(3)


@pytest.mark.parametrize("name", ["explain", "grad_norm_probe", "overfit", "histograms", "sanity"])
def test_lazy_modules_give_the_same_run_with_and_without_the_callbacks(tmp_path, name):
    plain = run_to_the_end(tmp_path, [], LazyCNN, loaders)
    explained = run_to_the_end(tmp_path, [IMAGE_CALLBACKS[name]()], LazyCNN, loaders)
    assert_same_run(plain, explained)


def test_lazy_modules_still_get_explained(tmp_path):
    callback = ExplainCallback(every_n_steps=2)
    run_to_the_end(tmp_path, [callback], LazyCNN, loaders)
    assert callback.probe is not None and callback._last_event_step == 4


class RandomStream(IterableDataset):
    """An IterableDataset with its own generator: every iterator continues the same random stream."""

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(7)

    def __iter__(self):
        for _ in range(4):
            x = torch.randn(8, 1, 12, 12, generator=self.generator)
            yield x, torch.randint(0, 3, (8,), generator=self.generator)


def stream_loaders():
    return DataLoader(RandomStream(), batch_size=None), None


@pytest.mark.parametrize("name", ["explain", "grad_norm_probe", "histograms"])
def test_a_probe_from_an_iterable_training_stream_does_not_advance_its_generator(tmp_path, name):
    plain = run_to_the_end(tmp_path, [], LitCNN, stream_loaders, limit_val_batches=0)
    callback = IMAGE_CALLBACKS[name]()
    explained = run_to_the_end(tmp_path, [callback], LitCNN, stream_loaders, limit_val_batches=0)
    assert_same_run(plain, explained)
    assert callback.probe is not None and callback._last_event_step == 4


# ------------------------------------------------------------------------------------------- a full disk
def fail_large_records(monkeypatch, limit: int = 2000):
    """Writes of event records above ``limit`` bytes raise ENOSPC: a disk with room for scalars only.

    Both writers meet the same disk: TensorBoard's ``RecordWriter`` (the logger's) and the raw file of the
    callbacks' own event file.
    """
    from tensorboard.summary.writer import record_writer

    import lightning_explain.callbacks._event_file as event_file_module

    original = record_writer.RecordWriter.write

    def write(self, data: bytes) -> None:
        if len(data) > limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)

    class SmallWritesOnly:
        def __init__(self, file: Any) -> None:
            self.file = file

        def write(self, data: bytes) -> int:
            if len(data) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    monkeypatch.setattr(event_file_module, "open", lambda *a, **k: SmallWritesOnly(open(*a, **k)), raising=False)


def test_a_full_disk_under_tensorboard_never_breaks_the_loggers_own_writer(tmp_path, monkeypatch):
    fail_large_records(monkeypatch)
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    with pytest.warns(UserWarning, match="No space left on device"):
        trainer(tmp_path, [ExplainCallback(every_n_steps=1)], logger=logger).fit(LitCNN(), *loaders())
    logger.experiment.flush()  # Lightning's own writer still works
    from lit_helpers import read_tensorboard

    accumulator = read_tensorboard(tmp_path / "tb" / "version_0")
    assert [e.step for e in accumulator.Scalars("explain/saliency/mean")][-1] == 8
    assert "explain/saliency" not in accumulator.Tags()["images"]


class FullDiskFile:
    def __init__(self, file: Any) -> None:
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.file.close()

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_no_temporary_png_files(tmp_path, monkeypatch):
    import lightning_explain.callbacks._event_file as event_file_module  # where PNG files are written

    monkeypatch.setattr(event_file_module, "open", lambda *a, **k: FullDiskFile(open(*a, **k)), raising=False)
    logger = CSVLogger(tmp_path, name="csv")
    with pytest.warns(UserWarning, match="No space left on device"):
        trainer(tmp_path, [ExplainCallback(every_n_steps=1)], logger=logger).fit(LitCNN(), *loaders())
    assert not list(tmp_path.rglob("*.tmp"))
