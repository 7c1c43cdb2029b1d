"""Small, fast models and helpers shared by the test suite.

Every model is a plain ``nn.Module`` classifier that returns logits ``(N, K)`` (or scores
``(N,)`` for :class:`SingleScoreCNN`) and is cheap enough to run on 16x16 inputs in a few
milliseconds on CPU. Module attribute names are stable so tests can refer to layers by
their dotted names from ``model.named_modules()``.

Besides the models this module holds helpers for checking that code under test leaves a
model exactly as it found it: :func:`snapshot_model`, :func:`assert_model_unchanged` and
:func:`assert_no_hooks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as module_mod

__all__ = [
    "MLP",
    "BrokenCNN",
    "ModelSnapshot",
    "ResidualBlock",
    "ResidualCNN",
    "SingleScoreCNN",
    "TinyCNN",
    "assert_model_unchanged",
    "assert_no_hooks",
    "snapshot_model",
    "warm_batchnorm",
]


class ResidualBlock(nn.Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``; keeps the channel count and spatial size.

    Submodules: ``conv1``, ``bn1``, ``relu`` (``inplace=True``), ``conv2``, ``bn2``. The final
    ReLU after the addition is functional, so the block's output is produced by the block itself.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(x + out)


class ResidualCNN(nn.Module):
    """A small ResNet-like classifier with BatchNorm, in-place ReLUs, a residual block and Dropout.

    Layout (dotted names as in ``named_modules()``)::

        stem      Sequential: stem.0 Conv2d(in, 8, 3) -> stem.1 BatchNorm2d(8) -> stem.2 ReLU(inplace=True)
        block     ResidualBlock(8)                       (N, 8, H, W)
        conv      Conv2d(8, 16, 3, stride=2)             (N, 16, H/2, W/2)
        relu      ReLU(inplace=True)                     overwrites conv's output in place
        pool      AdaptiveAvgPool2d(1)                   (N, 16, 1, 1): global pooling
        flatten   Flatten                                (N, 16)
        dropout   Dropout(p)                             on the pooled features
        fc        Linear(16, num_classes)                (N, num_classes)

    The last module with a spatial output (``H * W > 1``) before global pooling is ``relu``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 5, dropout: float = 0.5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 8, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
        )
        self.block = ResidualBlock(8)
        self.conv = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(self.stem(x))
        x = self.relu(self.conv(x))
        x = self.flatten(self.pool(x))
        return self.fc(self.dropout(x))


class TinyCNN(nn.Module):
    """A minimal, fast CNN classifier without BatchNorm or Dropout.

    Layout::

        features  Sequential: features.0 Conv2d(in, 4, 3) -> features.1 ReLU
                              -> features.2 Conv2d(4, 8, 3, stride=2) -> features.3 ReLU
        pool      AdaptiveAvgPool2d(1)
        fc        Linear(8, num_classes)

    The last module with a spatial output is the container ``features`` (its forward hook
    fires after those of its children).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 4, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class SingleScoreCNN(nn.Module):
    """A :class:`TinyCNN` body with one output per sample: returns scores of shape ``(N,)``."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.net = TinyCNN(in_channels=in_channels, num_classes=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


class BrokenCNN(TinyCNN):
    """A :class:`TinyCNN` whose forward raises ``RuntimeError`` after ``features`` has run.

    For testing that code which hooks a layer cleans up when the forward pass fails midway.
    """

    message = "BrokenCNN fails after its features ran"

    def forward(self, x: Tensor) -> Tensor:
        self.features(x)
        raise RuntimeError(self.message)


class MLP(nn.Module):
    """A multilayer perceptron that flattens its input: no layer has a spatial output.

    ``in_features`` must equal the number of elements per sample (``C * H * W`` for images).
    """

    def __init__(self, in_features: int = 16, hidden: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.flatten(x))))


class TinyViT(nn.Module):
    """Patch embedding (conv, stride 4) -> CLS + tokens + positions -> one encoder layer -> CLS head."""

    @torch.no_grad()  # built without autograd history, as before; decorating the class is deprecated
    def __init__(self, dim: int = 8, classes: int = 3, image: int = 16, patch: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.1 * torch.randn(1, 1 + (image // patch) ** 2, dim))
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.block(tokens))[:, 0])


def warm_batchnorm(model: nn.Module, inputs: Tensor, steps: int = 3) -> nn.Module:
    """Run ``steps`` train-mode forwards so BatchNorm running statistics are non-trivial.

    Each step feeds a shifted and scaled copy of ``inputs``, so running means move away from
    0, running variances from 1 and ``num_batches_tracked`` counts up. Every module's
    ``training`` flag is restored afterwards. Draws from the global RNG (Dropout). Returns
    ``model``.
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.train()
        for step in range(steps):
            model(inputs * (1.5 + step) + 0.5 * (step + 1))
    finally:
        for module, flag in flags:
            module.training = flag
    return model


@dataclass
class ModelSnapshot:
    """Everything :func:`assert_model_unchanged` compares: flags, tensors and ``.grad``."""

    training: dict[str, bool]
    state: dict[str, Tensor]
    grads: dict[str, Tensor | None]
    grad_objects: dict[str, Tensor | None]


def snapshot_model(model: nn.Module) -> ModelSnapshot:
    """Record every module's ``training`` flag, a copy of every parameter and buffer, and each ``.grad``."""
    return ModelSnapshot(
        training={name: module.training for name, module in model.named_modules()},
        state={name: tensor.detach().clone() for name, tensor in model.state_dict(keep_vars=True).items()},
        grads={name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()},
        grad_objects={name: p.grad for name, p in model.named_parameters()},
    )


def assert_model_unchanged(model: nn.Module, snapshot: ModelSnapshot) -> None:
    """Assert that ``model`` matches ``snapshot`` bitwise: flags, parameters, buffers and ``.grad``.

    A ``.grad`` that was ``None`` must still be ``None``; an existing ``.grad`` must be the very
    same tensor object holding the very same values.
    """
    training = {name: module.training for name, module in model.named_modules()}
    assert training == snapshot.training, "training flags changed"
    state = model.state_dict(keep_vars=True)
    assert state.keys() == snapshot.state.keys()
    for name, before in snapshot.state.items():
        after = state[name]
        assert after.dtype == before.dtype and torch.equal(after.detach(), before), f"{name} changed"
    for name, p in model.named_parameters():
        before = snapshot.grads[name]
        if before is None:
            assert p.grad is None, f"{name}.grad was written"
        else:
            assert p.grad is snapshot.grad_objects[name], f"{name}.grad was replaced"
            assert torch.equal(p.grad, before), f"{name}.grad values changed"


def assert_no_hooks(model: nn.Module) -> None:
    """Assert that no module of ``model`` (nor the global registries) holds a forward/backward hook."""
    for name, module in model.named_modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            hooks = getattr(module, attr, {})
            assert len(hooks) == 0, f"module {name or '<root>'} has {attr}: {dict(hooks)}"
    for attr in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    ):
        hooks = getattr(module_mod, attr, {})
        assert len(hooks) == 0, f"global {attr} is not empty: {dict(hooks)}"
