"""Suite-wide settings and shared fixtures.

The models here are tiny, so one intra-op thread is fastest and steadiest.
"""

import pytest
import torch
from toy_models import ResidualCNN, warm_batchnorm
from vit_models import AttentionViT, diverse_images

torch.set_num_threads(1)


@pytest.fixture
def mixed_model() -> ResidualCNN:
    """A warmed-up ResidualCNN: root in train mode, ``block`` in eval mode, some ``.grad`` already set."""
    torch.manual_seed(0)
    model = ResidualCNN(in_channels=3, num_classes=5)
    warm_batchnorm(model, torch.randn(8, 3, 16, 16))
    model.train()
    model.block.eval()
    model.fc.weight.grad = torch.randn_like(model.fc.weight)
    model.stem[0].weight.grad = torch.randn_like(model.stem[0].weight)
    assert model.stem[1].num_batches_tracked.item() > 0
    assert not torch.equal(model.stem[1].running_mean, torch.zeros(8))
    return model


@pytest.fixture
def attention_vit() -> tuple[AttentionViT, torch.Tensor]:
    """A small Hugging Face ViT (eager attention) in eval mode, 5 classes, and a batch (4, 3, 16, 16): what the
    contract tests run a method that reads attention on, where the others get a toy CNN."""
    torch.manual_seed(5)
    return AttentionViT(classes=5).eval(), diverse_images()


@pytest.fixture
def mixed_vit() -> AttentionViT:
    """The ViT counterpart of ``mixed_model``: root in train mode, the first block in eval mode, ``.grad`` set on the
    head and the patch embedding."""
    torch.manual_seed(0)
    model = AttentionViT(classes=5)
    model.train()
    model.vit.vit.layers[0].eval()
    model.vit.classifier.weight.grad = torch.randn_like(model.vit.classifier.weight)
    patches = model.vit.vit.embeddings.patch_embeddings.projection
    patches.weight.grad = torch.randn_like(patches.weight)
    return model
