"""How the validation probe's size sets how soon OverfitMonitor's overfitting alert comes.

Trains the memorisation and clean scenarios of ``examples/overfitting.py`` once per seed, records
after every epoch the per-sample loss and correctness of all 512 validation images and the
training probe's loss and accuracy, then replays :class:`~lightning_explain.overfit.detector.OverfitDetector`
(the monitor's defaults) on the first 128, 256 and 512 validation samples. Prints, per run, the
epoch of the smoothed validation-loss minimum, where ``EarlyStopping(patience=3)`` would stop, and
the epoch of the first overfitting alert for each probe size. First it prints what an event costs
(the two 512-sample probes' passes) in training samples of the same CNN.

Usage::

    python benchmarks/study_overfit_probe_size.py --seeds 0 1 2 3 4
    python benchmarks/study_overfit_probe_size.py --quick  # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lightning_explain.overfit.detector import EventSignals, OverfitDetector  # noqa: E402


def load_example():
    spec = importlib.util.spec_from_file_location("overfitting_example", ROOT / "examples" / "overfitting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SignalRecorder(Callback):
    """Per epoch (and before training): per-sample validation losses and hits, training-probe loss and accuracy."""

    def __init__(self, train, val, train_probe_size: int) -> None:
        self.train, self.val, self.size = train, val, train_probe_size
        self.events: list[dict] = []

    def _record(self, pl_module) -> None:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            val_logits = pl_module(self.val.images)
            train_logits = pl_module(self.train.images[: self.size])
        pl_module.train(was_training)
        train_labels = self.train.labels[: self.size]
        self.events.append(
            {
                "val_losses": F.cross_entropy(val_logits, self.val.labels, reduction="none"),
                "val_correct": (val_logits.argmax(1) == self.val.labels).float(),
                "train_loss": float(F.cross_entropy(train_logits, train_labels)),
                "train_accuracy": float((train_logits.argmax(1) == train_labels).float().mean()),
            }
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(pl_module)


def first_alert(events: list[dict], size: int) -> int | None:
    """The event index (= epoch) of the first overfitting alert with a validation probe of ``size`` samples."""
    detector = OverfitDetector()
    for epoch, event in enumerate(events):
        losses = event["val_losses"][:size]
        signals = EventSignals(
            step=epoch,
            train_loss=event["train_loss"],
            val_loss=float(losses.mean()),
            train_accuracy=event["train_accuracy"],
            val_accuracy=float(event["val_correct"][:size].mean()),
            val_losses=losses,
            grad_alignment=float("nan"),
            explanation_gap=float("nan"),
        )
        if any(alert.kind == "overfitting" for alert in detector.update(signals)):
            return epoch
    return None


def run(example, scenario: str, seed: int, epochs: int, sizes: list[int]) -> dict:
    train, val = example.make_data(scenario, seed)
    recorder = SignalRecorder(train, val, example.PROBE_SIZE)
    validation = example.ValidationRecorder()
    example.fit_shapes(train, val, seed=seed, epochs=epochs, callbacks=[recorder, validation], logger=False)
    per_epoch = validation.steps[0]
    minimum = example.smoothed_minimum_step(validation.steps, validation.val_losses) // per_epoch
    stop = validation.early_stopping_step
    return {
        "minimum": minimum,
        "early_stopping": None if stop is None else stop // per_epoch,
        "alerts": {size: first_alert(recorder.events, size) for size in sizes},
    }


def event_cost(example, repeats: int = 5) -> float:
    """Prints and returns how many training samples an event costs: the two probes' passes (512 samples each,
    ``read_probe`` and ``compare_probes``) against training steps of batch 32 on the example's CNN, interleaved."""
    from lightning_explain.overfit.signals import compare_probes, read_probe

    train, val = example.make_data("shortcut", 0)
    model = example.ShapesClassifier()
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def event():
        size = example.PROBE_SIZE
        compare_probes(
            read_probe(model, train.images[:size], train.labels[:size], parameters),
            read_probe(model, val.images[:size], val.labels[:size], parameters),
        )

    def epoch():
        model.train()
        for start in range(0, len(train), 32):
            optimizer.zero_grad()
            F.cross_entropy(model(train.images[start : start + 32]), train.labels[start : start + 32]).backward()
            optimizer.step()

    event_times, epoch_times = [], []
    for _ in range(repeats):
        for run_one, times in ((event, event_times), (epoch, epoch_times)):
            start = time.perf_counter()
            run_one()
            times.append(time.perf_counter() - start)
    per_sample = statistics.median(epoch_times) / len(train)
    samples = statistics.median(event_times) / per_sample
    print(
        f"event: {statistics.median(event_times):.3f} s; a training epoch of {len(train)} samples: "
        f"{statistics.median(epoch_times):.3f} s; an event costs as much as training on {samples:.0f} samples"
    )
    return samples


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    example = load_example()
    plan = {"memorisation": 40, "clean": 15}
    seeds = args.seeds
    if args.quick:
        plan, seeds = {"memorisation": 4, "clean": 1}, seeds[:1]
    event_cost(example, repeats=1 if args.quick else 5)
    header = " | ".join(f"alert, {size}" for size in args.sizes)
    print(f"| Scenario | Seed | Val-loss minimum | EarlyStopping stops | {header} |  (epochs)")
    rows = []
    for scenario, epochs in plan.items():
        for seed in seeds:
            result = run(example, scenario, seed, epochs, args.sizes)
            alerts = " | ".join(
                "none" if a is None else f"{a} ({a - result['minimum']:+d})" for a in result["alerts"].values()
            )
            stop = result["early_stopping"]
            print(f"| {scenario} | {seed} | {result['minimum']} | {'—' if stop is None else stop} | {alerts} |")
            rows.append({"scenario": scenario, "seed": seed, **result})
    return rows


if __name__ == "__main__":
    main()
