"""Models and data for the benchmarks, written here so that nothing needs torchvision or a download.

- :class:`SyntheticCNN`: a plain conv/BatchNorm/ReLU stack, the "larger synthetic CNN".
- :class:`ResNet18`: the ResNet-18 layout (BasicBlocks [2, 2, 2, 2], 64 to 512 channels,
  11.7 M parameters with 1000 classes), for the scale benchmark.
- :class:`Classifier`: a LightningModule that trains any of them with cross-entropy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, BatchNorm and an in-place ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SyntheticCNN(nn.Module):
    """Conv blocks that halve the resolution between stages, global pooling and a linear head.

    Grad-CAM's default layer is ``features`` (its last block's output).
    """

    def __init__(self, in_channels: int = 3, classes: int = 10, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_block(in_channels, widths[0])]
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [conv_block(cin, cout, stride=2), conv_block(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet18(nn.Module):
    """ResNet-18: a 7x7 stem, four stages of two BasicBlocks, global pooling, a linear head."""

    def __init__(self, in_channels: int = 3, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.head(self.layer4(self.layer3(self.layer2(self.layer1(x)))))


def build(name: str) -> tuple[nn.Module, int, int]:
    """``(model, input channels, default input side)`` for a model name used on the command line."""
    if name == "digits":  # the README demo's CNN, on (1, 32, 32) digits
        from _common import load_demo

        return load_demo().DigitsCNN(), 1, 32
    if name == "synthetic":
        return SyntheticCNN(), 3, 64
    if name == "resnet18":
        return ResNet18(), 3, 224
    raise ValueError(f"model must be one of {list(MODEL_NAMES)}, got {name!r}.")


MODEL_NAMES = ("digits", "synthetic", "resnet18")


def synthetic_images(n: int, size: int, channels: int = 3, classes: int = 10, seed: int = 0) -> TensorDataset:
    """Noise images with a brighter square whose position encodes the class (learnable, no download)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = 0.5 * torch.randn(n, channels, size, size, generator=generator)
    side = max(2, size // 8)
    for c in range(classes):
        row, col = divmod(c, 4)
        top, left = (row * 2 * side) % (size - side), (col * 2 * side) % (size - side)
        images[labels == c, :, top : top + side, left : left + side] += 1.5
    return TensorDataset(images, labels)


class Classifier(LightningModule):
    """Train ``net`` with cross-entropy and Adam on :func:`synthetic_images` data."""

    def __init__(
        self, net: nn.Module, n_train: int = 1024, n_val: int = 256, size: int = 64, batch_size: int = 64
    ) -> None:
        super().__init__()
        self.net = net
        self.n_train, self.n_val, self.size, self.batch_size = n_train, n_val, size, batch_size

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    def train_dataloader(self) -> DataLoader:
        data = synthetic_images(self.n_train, self.size, seed=1)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(synthetic_images(self.n_val, self.size, seed=2), batch_size=self.batch_size)
