"""A small Hugging Face ViT for the methods that read a transformer's attention (``MethodSpec.needs_attention``).

The contract tests run every registered method; the toy CNNs of ``toy_models`` have no attention, so a method
that needs it runs on :class:`AttentionViT` instead, built with the same contract as the CNN it stands in for
(the classes, the input shape, modes and ``.grad`` set the same way by the fixtures in ``conftest.py``).
"""

from __future__ import annotations

import torch
import transformers
from torch import Tensor, nn


def vit_config(
    classes: int = 5, channels: int = 3, image: int | tuple[int, int] = 16, patch: int = 4, dropout: float = 0.1
):
    """A small ``ViTConfig`` with eager attention: 2 blocks of 2 heads, width 16, a CLS token."""
    return transformers.ViTConfig(
        image_size=image,
        patch_size=patch,
        num_channels=channels,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=classes,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        initializer_range=0.2,  # larger than the default 0.02, so random logits differ between samples
        attn_implementation="eager",
    )


class AttentionViT(nn.Module):
    """``transformers.ViTForImageClassification`` (random init, eager attention) whose forward returns logits (N, K).

    Submodules: ``vit`` (the Hugging Face model; ``vit.vit.layers[i]`` its blocks, ``vit.classifier`` the
    head). Dropout (hidden and attention) is 0.1, so a train-mode forward would draw random numbers.
    """

    def __init__(self, classes: int = 5, channels: int = 3, image: int = 16, patch: int = 4) -> None:
        super().__init__()
        self.vit = transformers.ViTForImageClassification(vit_config(classes, channels, image, patch))

    def forward(self, x: Tensor) -> Tensor:
        return self.vit(pixel_values=x).logits


def diverse_images(n: int = 4, channels: int = 3, size: int = 16, seed: int = 3) -> Tensor:
    """A batch whose samples differ in scale and offset."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 3.0, n).view(n, 1, 1, 1)
    shift = torch.linspace(-2.0, 3.0, n).view(n, 1, 1, 1)
    return torch.randn(n, channels, size, size, generator=generator) * scale + shift


class BrokenViT(AttentionViT):
    """An :class:`AttentionViT` whose forward raises on its ``fail_at``-th call, after the blocks ran (so every
    attention hook has fired when the error escapes)."""

    message = "BrokenViT forward failed"

    def __init__(self, fail_at: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        logits = super().forward(x)
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError(self.message)
        return logits
