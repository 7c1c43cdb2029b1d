"""Suite-wide settings and shared fixtures.

The models here are tiny, so one intra-op thread is fastest and steadiest.
"""

import pytest
import torch
from toy_models import ResidualCNN, warm_batchnorm

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
