"""Watch a small CNN learn real handwritten digits, with explanations in TensorBoard.

Data: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 scans of handwritten digits,
no download), upsampled to 32x32. Logged: Grad-CAM and integrated gradients (from a blank image)
of the first 8 validation digits every 10 steps and at each epoch's end, gradient norms, the
loss and accuracy.

    python examples/digits.py            # then: tensorboard --logdir logs/digits --samples_per_plugin images=1000
    python examples/digits.py --help     # options
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback, GradientNormMonitor

METHODS = ("grad_cam", "integrated_gradients")
"""Grad-CAM, and integrated gradients from a blank image rather than plain saliency. On these upsampled 8x8
scans the plain gradient, and SmoothGrad's average of it over noisy copies, stay speckle at every step; integrated
gradients attribute only where the digit differs from a blank page, and settle on the strokes that decide the
class as the model learns."""


class DigitsDataModule(LightningDataModule):
    """scikit-learn's handwritten digits as (1, 32, 32) images: 1,437 to train, 360 to validate."""

    def __init__(self, batch_size: int = 64, size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.size = size

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
        images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        mean, std = images.mean(), images.std()
        images = (images - mean) / std
        self.background = float(-mean / std)  # a blank page, normalised: the integrated gradients' baseline
        labels = torch.tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        train, val = order[:1437], order[1437:]
        self.train_set = TensorDataset(images[train], labels[train])
        self.val_set = TensorDataset(images[val], labels[val])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class DigitsCNN(LightningModule):
    """Three conv blocks with BatchNorm, average pooling between them (its gradients are smoother than max
    pooling's), global average pooling and a linear classifier."""

    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(1, 16), nn.AvgPool2d(2), block(16, 32), nn.AvgPool2d(2), block(32, 64))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs to train (default: 10)")
    parser.add_argument(
        "--logdir", default="logs/digits", help="TensorBoard folder; each run adds version_N (default: logs/digits)"
    )
    parser.add_argument(
        "--every-n-steps", type=int, default=10, help="an explanation every N steps, besides epoch ends (default: 10)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        help=f"attribution methods to log (default: {' '.join(METHODS)})",
    )
    parser.add_argument(
        "--limit-train-batches",
        type=float,
        default=None,
        help="a fraction (or number) of the training batches per epoch, for a quick try (default: all)",
    )
    parser.add_argument("--size", type=int, default=32, help="side of the input images in pixels (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    seed_everything(args.seed, verbose=False)
    logger = TensorBoardLogger(args.logdir, name="")
    limits = {} if args.limit_train_batches is None else {"limit_train_batches": args.limit_train_batches}
    data = DigitsDataModule(size=args.size)
    data.setup("fit")
    options = {"integrated_gradients": {"baseline": data.background, "steps": 16}}
    options = {m: o for m, o in options.items() if m in args.methods}
    explain = ExplainCallback(every_n_steps=args.every_n_steps, methods=args.methods, method_options=options or None)
    trainer = Trainer(
        max_epochs=args.max_epochs,
        **limits,
        logger=logger,
        callbacks=[explain, GradientNormMonitor()],
        log_every_n_steps=10,
        enable_checkpointing=False,
        enable_model_summary=False,
        deterministic=True,
        accelerator="cpu",
    )
    start = time.perf_counter()
    trainer.fit(DigitsCNN(), datamodule=data)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print(f"\nTrained {trainer.current_epoch} epochs ({trainer.global_step} steps) in {seconds:.0f} s: ", end="")
    print(", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))
    print(f"Explanations, gradient norms and curves are in {Path(logger.log_dir).resolve()}")
    print(f"See them with:  tensorboard --logdir {args.logdir} --samples_per_plugin images=1000")
    print("then open http://localhost:6006/#lightning_explain (the Explain tab: one slider for every method,")
    print("click a sample to follow it through the run) or #images (one card per method; Scalars for the curves)")
    return metrics


if __name__ == "__main__":
    main()
