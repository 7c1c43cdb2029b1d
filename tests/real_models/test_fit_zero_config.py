"""A few training steps with a zero-config ExplainCallback on a timm ViT, a timm Swin and a Hugging Face ViT.

The callback finds the layer itself (exposed as ``callback.layer_name`` once fit starts) and logs its heatmaps
to TensorBoard; the Hugging Face model's LightningModule returns the raw ModelOutput from ``forward``.
"""

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import read_tensorboard, trainer
from real_architectures import CLASSES, TRANSFORMERS
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback

pytestmark = pytest.mark.real_models

FIT_CASES = [c for c in TRANSFORMERS if c.id in ("timm-vit", "timm-swin", "hf-vit")]


class Classifier(LightningModule):
    """Any image classifier as ``self.net``; ``forward`` returns whatever the network returns."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        output = self(x)
        return F.cross_entropy(getattr(output, "logits", output), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("case", FIT_CASES, ids=lambda c: c.id)
def test_zero_config_callback_fits_and_logs(case, tmp_path):
    module = Classifier(case.model())
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, *case.shape[1:], generator=generator)
    labels = torch.randint(0, CLASSES, (8,), generator=generator)
    data = DataLoader(TensorDataset(images, labels), batch_size=4)
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(probe_size=2)
    run = trainer(tmp_path, [callback], logger=logger, max_epochs=1)
    run.fit(module, train_dataloaders=data)

    assert run.global_step == 2
    events = read_tensorboard(logger.log_dir)
    for method in ("saliency", "grad_cam"):
        assert events.Images(f"explain/{method}"), f"no {method} image logged"
    assert callback.layer_name == "net." + case.layer_name(module.net)
