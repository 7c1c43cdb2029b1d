"""A small CNN learns scikit-learn's handwritten digits; see what it looks at, in TensorBoard, while it trains.

python examples/quickstart.py      # then: tensorboard --logdir logs/quickstart --samples_per_plugin images=1000
"""

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback, GradientNormMonitor

digits = load_digits()  # 1,797 real 8x8 scans, bundled with scikit-learn
images = F.interpolate(torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16, size=16, mode="bilinear")
labels = torch.tensor(digits.target)
train = DataLoader(TensorDataset(images[:1440], labels[:1440]), batch_size=64, shuffle=True)
val = DataLoader(TensorDataset(images[1440:], labels[1440:]), batch_size=256)


class DigitsNet(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


trainer = Trainer(
    max_epochs=8,
    logger=TensorBoardLogger("logs/quickstart", name=""),
    callbacks=[ExplainCallback(every_n_steps=5), GradientNormMonitor()],
    enable_checkpointing=False,
)
trainer.fit(DigitsNet(), train, val)
print(
    "Now run: tensorboard --logdir logs/quickstart --samples_per_plugin images=1000  (then open http://localhost:6006/#images)"
)
