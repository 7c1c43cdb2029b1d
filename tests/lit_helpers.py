"""Small Lightning pieces shared by the callback tests: a module, data, loggers, readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_images(n: int, seed: int, size: int = 12, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright square whose position encodes the class (easy to learn)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = 0.3 * torch.randn(n, 1, size, size, generator=generator)
    for c in range(classes):
        row = 1 + 3 * c
        images[labels == c, :, row : row + 3, 2:5] += 2.0
    return images, labels


class LitCNN(LightningModule):
    """Conv + BatchNorm + in-place ReLU, global pooling and a linear head; SGD with momentum."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, classes))
        self.training_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.training_steps += 1
        assert self.training, "a callback left the module in eval mode during training"
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class MonteCarloTable(LightningModule):
    """An MLP over (N, 6) features with three classes that draws dropout noise also in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(F.dropout(x, 0.3, training=True))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class HFViT(LightningModule):
    """transformers' ViTForImageClassification from a small config: forward returns its ModelOutput."""

    def __init__(self) -> None:
        super().__init__()
        import transformers

        config = transformers.ViTConfig(
            image_size=12,
            patch_size=4,
            num_channels=1,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=3,
        )
        self.vit = transformers.ViTForImageClassification(config)

    def forward(self, x: torch.Tensor) -> Any:
        return self.vit(pixel_values=x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def loaders(n_train: int = 32, n_val: int = 16, batch_size: int = 8, shuffle: bool = True):
    """Training and validation DataLoaders of :func:`make_images` data."""
    train = TensorDataset(*make_images(n_train, seed=1))
    val = TensorDataset(*make_images(n_val, seed=2))
    return (
        DataLoader(train, batch_size=batch_size, shuffle=shuffle),
        DataLoader(val, batch_size=batch_size),
    )


class RecordingLogger(Logger):
    """A logger that keeps every ``log_metrics`` call in memory: ``self.metrics = [(step, dict)]``."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def series(self, key: str) -> list[tuple[int, float]]:
        """``[(step, value)]`` of one metric, in logging order."""
        return [(step, m[key]) for step, m in self.metrics if key in m]


def trainer(tmp_path: Path, callbacks: list, logger: Any = None, **kwargs: Any) -> Trainer:
    """A quiet CPU trainer for tests."""
    options = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=logger if logger is not None else RecordingLogger(),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return Trainer(**options)


def read_tensorboard(logdir: Path) -> Any:
    """An EventAccumulator with every image, scalar and histogram of a TensorBoard log directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator
