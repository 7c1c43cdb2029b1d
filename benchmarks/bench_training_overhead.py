"""Goal 3: what the callbacks add to a training run's wall time.

Full ``Trainer.fit`` runs, with and without callbacks, alternate (same seed, same data, a
TensorBoard logger in every arm, a fresh log directory per run); we report each arm's
median wall time and its ratio to the run without callbacks. Arms:

- ``none``: no callbacks;
- ``default``: ``ExplainCallback()`` + ``GradientNormMonitor()`` (their defaults);
- ``grad_norm_every_step``: ``GradientNormMonitor(source="train", every_n_steps=1)``.

Wall-time ratios of whole fits are what the goal is about, but on a shared machine they are
noisy; so the script also times every hook call of our callbacks during the fits and prints
``1 + (time inside our hooks) / (median fit without callbacks)``, an estimate that noise
from other processes inflates much less.

Workloads: ``digits`` (the README demo: its CNN, data and Trainer settings) and ``synthetic``
(a larger CNN, :class:`models.SyntheticCNN`, 1.2 M parameters, on 1,536 synthetic 3x32x32
images: 24 steps of 64 an epoch, 2 epochs).

    python benchmarks/bench_training_overhead.py [--workload digits|synthetic|all] [--repeats 3] [--quick]
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings

import torch
from _common import load_demo, parser, setup, sync
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from models import Classifier, SyntheticCNN

from lightning_explain import ExplainCallback, GradientNormMonitor

HOOKS = ("setup", "on_train_start", "on_train_batch_end", "on_train_epoch_end", "on_before_optimizer_step")
_hook_seconds = [0.0]


def timed(callback):
    """``callback`` with every hook it runs in a fit timed into ``_hook_seconds``."""
    for hook in HOOKS:
        original = getattr(callback, hook)

        def wrapper(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                _hook_seconds[0] += time.perf_counter() - start

        setattr(callback, hook, wrapper)
    return callback


ARMS = {
    "none": lambda: [],
    "default": lambda: [timed(ExplainCallback()), timed(GradientNormMonitor())],
    "grad_norm_every_step": lambda: [timed(GradientNormMonitor(source="train", every_n_steps=1))],
}


def workload(name: str, quick: bool):
    """``(make_module, make_datamodule or None, trainer options)`` of a workload."""
    limits = dict(limit_train_batches=3, limit_val_batches=1) if quick else {}
    if name == "digits":
        demo = load_demo()
        options = dict(max_epochs=1 if quick else 5, log_every_n_steps=10, deterministic=True, **limits)
        return demo.DigitsCNN, demo.DigitsDataModule, options
    if name == "synthetic":
        size, n_train = (16, 64) if quick else (32, 1536)  # 24 steps of 64 images an epoch
        widths = (8, 16) if quick else (32, 64, 128, 256)
        options = dict(max_epochs=1 if quick else 2, log_every_n_steps=10, **limits)
        return lambda: Classifier(SyntheticCNN(widths=widths), n_train=n_train, n_val=128, size=size), None, options
    raise ValueError(f"unknown workload {name!r}")


def fit_seconds(name: str, arm: str, quick: bool, device: torch.device) -> tuple[float, float]:
    """Seconds of one ``Trainer.fit`` of workload ``name`` with the callbacks of ``arm``, and of their hooks."""
    make_module, make_data, options = workload(name, quick)
    seed_everything(0, verbose=False)
    module = make_module()
    data = make_data() if make_data else None
    with tempfile.TemporaryDirectory() as logdir:
        trainer = Trainer(
            logger=TensorBoardLogger(logdir, name=name),
            callbacks=ARMS[arm](),
            accelerator=device.type,
            devices=1,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            **options,
        )
        sync(device)
        _hook_seconds[0] = 0.0
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        sync(device)
        return time.perf_counter() - start, _hook_seconds[0]


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--workload", choices=("digits", "synthetic", "all"), default="all")
    args = p.parse_args(argv)
    device = setup(args)
    repeats = args.repeats or (1 if args.quick else 5)
    names = ("digits", "synthetic") if args.workload == "all" else (args.workload,)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    known = ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "lightning_utilities", "pytorch_lightning")
    for logger_name in {*known, *(n for n in logging.root.manager.loggerDict if n.startswith("lightning"))}:
        logging.getLogger(logger_name).setLevel(logging.WARNING)  # no "GPU available" lines per fit
    ratios: dict[str, float] = {}
    for name in names:
        arms = list(ARMS)
        fit_seconds(name, "default", args.quick, device)  # warm-up: imports, allocator, data loading
        samples: dict[str, list[float]] = {arm: [] for arm in arms}
        in_hooks: dict[str, list[float]] = {arm: [] for arm in arms}
        for round_index in range(repeats):
            for arm in arms if round_index % 2 == 0 else reversed(arms):
                seconds, hooks = fit_seconds(name, arm, args.quick, device)
                samples[arm].append(seconds)
                in_hooks[arm].append(hooks)
        medians = {arm: statistics.median(values) for arm, values in samples.items()}
        print(f"\n## training overhead: {name} ({device}, {repeats} fits per arm, interleaved)")
        print(f"{'arm':<24} {'median s':>9} {'ratio':>7}   all runs (s)")
        for arm in arms:
            ratio = medians[arm] / medians["none"]
            ratios[f"{name}/{arm}"] = ratio
            runs = " ".join(f"{v:.2f}" for v in samples[arm])
            print(f"{arm:<24} {medians[arm]:>9.2f} {ratio:>6.3f}x   {runs}")
        for arm in arms[1:]:
            hooks = statistics.median(in_hooks[arm])
            ratios[f"{name}/{arm} (hook time)"] = 1 + hooks / medians["none"]
            print(f"{arm:<24} {hooks * 1e3:>7.0f} ms in our hooks per fit (median)")
        for arm in arms[1:]:
            print(f"ratio {name}/{arm} / none = {ratios[f'{name}/{arm}']:.3f}x")
            estimate = ratios[f"{name}/{arm} (hook time)"]
            print(f"ratio {name}/{arm} hook-time estimate 1 + hooks / none = {estimate:.3f}x")
    return ratios


if __name__ == "__main__":
    main()
