"""Event files for the dashboard's tests (made once per session by ``conftest.dashboard_logdir``).

``fit/version_0``: a real short fit (ExplainCallback at every step, OverfitMonitor at every epoch), 13 image
steps per method, more than TensorBoard's default sample of 10. ``synthetic``: written directly, with what a
short fit cannot be relied on to produce: an overfitting alert that fires twice, a new quality-metric tag with
a NaN, and an image without the grid-layout metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, trainer
from torch.utils.tensorboard import SummaryWriter

from lightning_explain import ExplainCallback, OverfitMonitor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from screenshot_dashboard import tensorboard  # noqa: E402  (a real tensorboard: started, waited for, stopped)

METHODS = ("saliency", "grad_cam")
FIT_RUN = "fit/version_0"
SYNTHETIC_RUN = "synthetic"
SYNTHETIC_STEPS = [0, 10, 20, 30, 40, 50]
ALERT = [0, 0, 1, 1, 0, 1]  # fires at steps 20 and 50
AUC = [0.5, 0.4, float("nan"), 0.3, 0.25, 0.2]


def fit_run(root: Path) -> None:
    """The real short fit, logged to ``root/fit/version_0``."""
    torch.manual_seed(0)
    train, val = loaders(32, 16, 8)
    callbacks = [ExplainCallback(every_n_steps=1, methods=METHODS), OverfitMonitor(probe_size=16, image_samples=4)]
    logger = TensorBoardLogger(str(root), name="fit", version=0)
    trainer(root, callbacks, logger=logger, max_epochs=3).fit(LitCNN(), train, val)


def write_synthetic(path: Path, steps=SYNTHETIC_STEPS, alert=ALERT) -> None:
    """The synthetic run: a plain image tag, an alert series and a quality metric (steps ``steps``)."""
    writer = SummaryWriter(str(path))
    for i, step in enumerate(steps):
        image = np.full((20, 30, 3), (40 * i, 100, 200 - 30 * i), np.uint8)
        writer.add_image("explain/occlusion", image, step, dataformats="HWC")
        writer.add_scalar("overfit/alert", alert[i], step)
        writer.add_scalar("explain/occlusion/deletion_auc", AUC[i], step)
        writer.add_scalar("train_loss", 1.0 / (i + 1), step)
    writer.close()


def serve_tensorboard(logdir: Path):
    """A real ``tensorboard`` on ``logdir`` (reloading every second); a context manager that yields its URL."""
    return tensorboard(logdir, "--reload_interval", "1")
