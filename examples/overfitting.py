"""OverfitMonitor catches memorisation and a shortcut while the model trains, and shows why.

Synthetic shapes with known ground truth (:mod:`lightning_explain.synthetic`), three scenarios:

- ``memorisation``: 400 training images, 40% of their labels random; trained long enough to memorise;
- ``shortcut``: the training images carry a class-coded corner marker that validation images lack;
  the monitor gets the shapes' bounding boxes as masks (``shortcut-no-masks``: the same without);
- ``clean``: 3,000 clean training images; nothing to alert on.

Run::

    python examples/overfitting.py                            # the shortcut: the alert and its images
    python examples/overfitting.py --scenario memorisation
    python examples/overfitting.py --table --seeds 0 1 2 3 4  # the README's table

Each run logs to TensorBoard (``--logdir``, default ``logs/overfitting``, one folder per scenario and
seed): the ``overfit/*`` scalars and the ``overfit/train_saliency`` / ``overfit/val_saliency`` images.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import OverfitMonitor
from lightning_explain.attribution import saliency
from lightning_explain.render.grids import render_explanation_grid
from lightning_explain.render.png import encode_png
from lightning_explain.synthetic import MARKER_SIZE, make_shapes

SCENARIOS = {
    "memorisation": {"train": {"n": 400, "label_noise": 0.4}, "epochs": 40},
    "shortcut": {"train": {"n": 1000, "marker": True}, "epochs": 10, "masks": True},
    "shortcut-no-masks": {"train": {"n": 1000, "marker": True}, "epochs": 10},
    "clean": {"train": {"n": 3000}, "epochs": 15},
}
NOISE = 0.35  # background noise of the images (make_shapes' default)
PROBE_SIZE = 512  # OverfitMonitor's default
VAL_SIZE = 512


class ShapesClassifier(LightningModule):
    """A small CNN for 32×32 one-channel images, 4 classes."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 4),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class ValidationRecorder(Callback):
    """Records the validation loss after each epoch, and where ``EarlyStopping(patience=3)`` would stop.

    The early stopping is Lightning's own, fed the same numbers but kept from stopping, so the run
    goes on and the alert can be compared with it on one and the same run.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.val_losses: list[float] = []
        self.shadow = EarlyStopping(monitor="val_loss", patience=3)
        self.early_stopping_step: int | None = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics["val_loss"].detach().cpu()
        self.steps.append(trainer.global_step)
        self.val_losses.append(float(loss))
        should_stop, _ = self.shadow._evaluate_stopping_criteria(loss)
        if should_stop and self.early_stopping_step is None:
            self.early_stopping_step = trainer.global_step


def smoothed_minimum_step(steps: list[int], losses: list[float], window: int = 5) -> int:
    """The step where the centred moving average (``window`` epochs) of the validation loss is lowest."""
    half = window // 2
    smoothed = [
        sum(losses[max(0, i - half) : i + half + 1]) / len(losses[max(0, i - half) : i + half + 1])
        for i in range(len(losses))
    ]
    return steps[min(range(len(losses)), key=smoothed.__getitem__)]


def make_data(scenario: str, seed: int):
    """The scenario's training and validation data (validation: 512 clean images without marker)."""
    train = make_shapes(**SCENARIOS[scenario]["train"], seed=seed, noise=NOISE)
    val = make_shapes(VAL_SIZE, seed=seed + 1000, noise=NOISE)
    return train, val


def fit_shapes(train, val, *, seed: int, epochs: int, callbacks: list, logger) -> tuple[ShapesClassifier, Trainer]:
    """Seed, then train a fresh :class:`ShapesClassifier` on the CPU (batches of 32, shuffled)."""
    seed_everything(seed, workers=True, verbose=False)
    model = ShapesClassifier()
    trainer = Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    loaders = (
        DataLoader(TensorDataset(*train.tensors()), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(*val.tensors()), batch_size=256),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|bottleneck|log_every_n_steps).*")
        trainer.fit(model, *loaders)
    return model, trainer


def run_scenario(scenario: str, seed: int, *, logdir: str = "logs/overfitting", max_epochs: int | None = None) -> dict:
    """Train one scenario with an :class:`OverfitMonitor`; return what it found and the reference points."""
    train, val = make_data(scenario, seed)
    with_masks = SCENARIOS[scenario].get("masks", False)
    masks = {"train": train.masks[:PROBE_SIZE], "val": val.masks[:PROBE_SIZE]} if with_masks else None
    monitor = OverfitMonitor(masks=masks, probe_size=PROBE_SIZE)
    recorder = ValidationRecorder()
    logger = TensorBoardLogger(logdir, name=f"{scenario}_seed{seed}")
    epochs = max_epochs or SCENARIOS[scenario]["epochs"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="OverfitMonitor alert")  # printed below instead
        model, trainer = fit_shapes(train, val, seed=seed, epochs=epochs, callbacks=[monitor, recorder], logger=logger)
    return {
        "scenario": scenario,
        "seed": seed,
        "alerts": list(monitor.alerts),
        "first_alert_step": monitor.alerts[0].step if monitor.alerts else None,
        "smoothed_minimum_step": smoothed_minimum_step(recorder.steps, recorder.val_losses),
        "early_stopping_step": recorder.early_stopping_step,
        "steps_per_epoch": recorder.steps[0] if recorder.steps else None,
        "final_val_loss": recorder.val_losses[-1],
        "model": model,
        "train": train,
        "log_dir": trainer.logger.log_dir,
    }


def saliency_on_marker(model: nn.Module, train) -> tuple[float, float]:
    """Shares of the training probe's saliency on the marker and on the shape (the model decides from the first)."""
    images, labels = train.images[:PROBE_SIZE], train.labels[:PROBE_SIZE]
    maps = saliency(model, images, target=labels)
    size = images.shape[-1]
    marker = torch.zeros_like(maps, dtype=torch.bool)
    for i, label in enumerate(labels.tolist()):
        top = 1 if label < 2 else size - 1 - MARKER_SIZE
        left = 1 if label % 2 == 0 else size - 1 - MARKER_SIZE
        marker[i, top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
    total = maps.flatten(1).sum(1)
    on_marker = (maps * marker).flatten(1).sum(1) / total
    on_shape = (maps * train.masks[:PROBE_SIZE]).flatten(1).sum(1) / total
    return float(on_marker.mean()), float(on_shape.mean())


def save_evidence(model: nn.Module, train, path: Path, samples: int = 8) -> Path:
    """A PNG of the first training-probe images beside their saliency maps: the picture behind a shortcut alert."""
    images, labels = train.images[:samples], train.labels[:samples]
    maps = saliency(model, images, target=labels)
    correct = model.eval()(images).argmax(dim=1) == labels
    labels = [f"LABEL {t}" for t in labels.tolist()]
    grid = render_explanation_grid(images, maps, correct=correct, labels=labels, title="training probe saliency")
    path.write_bytes(encode_png(grid.cpu().numpy()))
    return path


def describe(result: dict) -> str:
    """A few lines about one run."""
    per_epoch = result["steps_per_epoch"]
    lines = [f"{result['scenario']} (seed {result['seed']}): {len(result['alerts'])} alert(s)"]
    for alert in result["alerts"]:
        lines.append(f"  step {alert.step} (epoch {alert.step / per_epoch:.0f}) [{alert.kind}] {alert.reason}")
    lines.append(
        f"  validation loss: smoothed minimum at step {result['smoothed_minimum_step']}; "
        f"EarlyStopping(patience=3) would stop at step {result['early_stopping_step']}"
    )
    return "\n".join(lines)


def table(seeds: list[int], logdir: str, scenarios: list[str] | None = None) -> str:
    """The README's table: per scenario and seed, the alert against the two reference points."""
    rows = [
        "| Scenario | Seed | First alert (kind) | Smoothed val-loss minimum | EarlyStopping(patience=3) stops | "
        "Alert − minimum | Alert − EarlyStopping |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios or SCENARIOS:
        for seed in seeds:
            r = run_scenario(scenario, seed, logdir=logdir)
            alert, minimum, stop = r["first_alert_step"], r["smoothed_minimum_step"], r["early_stopping_step"]
            per_epoch = r["steps_per_epoch"]
            kind = f" ({r['alerts'][0].kind})" if r["alerts"] else ""
            rows.append(
                f"| {scenario} | {seed} | {alert if alert is not None else 'none'}{kind} | {minimum} | "
                f"{stop if stop is not None else 'does not stop'} | "
                f"{_epochs(alert, minimum, per_epoch)} | {_epochs(alert, stop, per_epoch)} |"
            )
            print(rows[-1], flush=True)
    return "\n".join(rows)


def _epochs(step: int | None, reference: int | None, per_epoch: int) -> str:
    if step is None or reference is None:
        return "—"
    return f"{(step - reference) / per_epoch:+.0f} epochs"


def main(argv: list[str] | None = None) -> dict | str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ", ".join(SCENARIOS)
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="shortcut", help=f"{names} (default: shortcut)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data and the model (default: 0)")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="epochs to train (default: the scenario's, 10 to 40)"
    )
    parser.add_argument("--table", action="store_true", help="run every scenario for each of --seeds, print a table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --table (default: 0 1 2)")
    parser.add_argument(
        "--scenarios", choices=list(SCENARIOS), nargs="+", default=None, help="scenarios for --table (default: all)"
    )
    parser.add_argument("--logdir", default="logs/overfitting", help="TensorBoard folder (default: logs/overfitting)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(4, torch.get_num_threads()))
    if args.table:
        markdown = table(args.seeds, args.logdir, args.scenarios)
        print("\n" + markdown)
        return markdown
    result = run_scenario(args.scenario, args.seed, logdir=args.logdir, max_epochs=args.max_epochs)
    print(describe(result))
    if args.scenario.startswith("shortcut"):
        marker, shape = saliency_on_marker(result["model"], result["train"])
        print(f"  saliency on the training probe: {marker:.0%} on the marker, {shape:.0%} on the shape")
        picture = save_evidence(result["model"], result["train"], Path(result["log_dir"]) / "train_saliency.png")
        print(f"  the training probe's saliency, as in TensorBoard's overfit/train_saliency: {picture}")
    print(f"Logs: {Path(result['log_dir'])}")
    print(
        f"See them with:  tensorboard --logdir {args.logdir} --samples_per_plugin images=1000  (images under overfit/)"
    )
    return result


if __name__ == "__main__":
    main()
