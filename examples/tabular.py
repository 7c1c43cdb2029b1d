"""Which features does a tabular MLP use? 100 features, of which only the first 5 carry the class.

Data: scikit-learn's ``make_classification`` with 5 informative features and 95 pure-noise ones,
not shuffled, so features 0-4 are the informative ones. An MLP (100 -> 64 -> 32 -> 2, ReLU) is
trained with ``FeatureExplainCallback``, which logs the bar chart of the top features by mean
saliency to TensorBoard as training goes. At the end the script reports how many of the 5
informative features the mean |attribution| over the validation set ranks in its top 5.

    python examples/tabular.py            # then: tensorboard --logdir logs/tabular --samples_per_plugin images=1000
    python examples/tabular.py --help     # options
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain.attribution.feature_attribution import feature_saliency
from lightning_explain.callbacks.feature_explain_callback import FeatureExplainCallback

INFORMATIVE = 5


def make_data(n_samples: int, n_features: int, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """``make_classification`` with the informative features first; 80% to train, 20% to validate."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=INFORMATIVE,
        n_redundant=0,
        n_repeated=0,
        n_classes=2,
        shuffle=False,
        random_state=seed,
    )
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))  # shuffle samples, not features
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return TensorDataset(x[:split], y[:split]), TensorDataset(x[split:], y[split:])


class TabularMLP(LightningModule):
    """An MLP: features -> 64 -> 32 -> 2 with ReLU; Adam with L2 weight decay.

    The weight decay shrinks the weights on the 95 noise features, which otherwise keep a
    sizeable gradient after a few epochs.
    """

    def __init__(self, n_features: int = 100, lr: float = 3e-3, weight_decay: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(n_features, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

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
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def informative_in_top(attributions: Tensor, k: int = INFORMATIVE) -> int:
    """How many of the informative features (0 to 4) are among the k largest mean |attribution|."""
    top = attributions.abs().mean(dim=0).topk(k).indices
    return int((top < INFORMATIVE).sum())


def attribution_methods() -> dict[str, Callable[[nn.Module, Tensor, Tensor], Tensor]]:
    """Saliency, and integrated gradients when this version of the package has it."""
    methods: dict[str, Callable] = {"saliency": feature_saliency}
    try:
        from lightning_explain.attribution import integrated_gradients  # added by a later version
    except ImportError:
        return methods
    methods["integrated_gradients"] = integrated_gradients
    return methods


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs to train (default: 10)")
    parser.add_argument("--n-samples", type=int, default=2000, help="samples to generate (default: 2000)")
    parser.add_argument("--n-features", type=int, default=100, help="features, the first 5 informative (default: 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default: 0.003)")
    parser.add_argument("--weight-decay", type=float, default=1e-2, help="Adam's weight decay (default: 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--logdir", default="logs/tabular", help="TensorBoard folder (default: logs/tabular)")
    args = parser.parse_args(argv)

    seed_everything(args.seed, workers=True, verbose=False)
    train_set, val_set = make_data(args.n_samples, args.n_features, args.seed)
    names = [f"{'inf' if i < INFORMATIVE else 'noise'}_{i}" for i in range(args.n_features)]
    model = TabularMLP(args.n_features, lr=args.lr, weight_decay=args.weight_decay)
    explain = FeatureExplainCallback(feature_names=names, top_k=10, probe_size=64)
    trainer = Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(args.logdir, name=""),
        callbacks=[explain],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    trainer.fit(
        model,
        DataLoader(train_set, batch_size=args.batch_size, shuffle=True),
        DataLoader(val_set, batch_size=512),
    )
    x, y = val_set.tensors
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    print(f"validation accuracy: {accuracy:.3f}")
    found: dict[str, int] = {}
    for name, method in attribution_methods().items():
        try:
            attributions = method(model, x, y)
        except (TypeError, ValueError) as error:  # a method that does not take tabular inputs
            print(f"{name}: skipped ({error})")
            continue
        found[name] = informative_in_top(attributions)
        print(f"{name}: {found[name]} of the {INFORMATIVE} informative features are in its top {INFORMATIVE}")
    print(f"logs: tensorboard --logdir {args.logdir} --samples_per_plugin images=1000")
    return found


if __name__ == "__main__":
    main()
