"""What a TokenExplainCallback event costs on examples/text.py (a tiny BERT on planted-keyword texts), in training
steps of that example, and what the callback adds to the example's whole run.

Everything is built by the example itself (``examples/text.py``: its data, tokenizer, model, probe of 32 validation
texts with their keyword masks, Trainer settings and callback), with its default arguments.

1. One event: the callback's own event code (``_compute`` + ``_log_event``: the attributions, the statistics, the token
   pictures rendered and PNG-encoded, the markdown, the quality forward passes; only the TensorBoard file write is left
   out) on the example's model after one epoch of training, against one training step of the example (``self.model(
   **batch).loss``, backward, AdamW step, on a batch of 32 training texts). Interleaved after a warm-up, medians:

   - ``event: gradients``: ``methods=("input_x_gradient", "saliency")`` (one forward and one backward pass);
   - ``event: + integrated_gradients``: the example's three methods (integrated gradients: 32 points on the path);
   - ``event: + quality``: the example's callback: three methods, deletion, insertion and the pointing game (forward
     passes of the probe with its top tokens replaced, for each method and for random maps).

   - ``attributions alone: gradients``: the first configuration's ``_compute`` only (its event less the logging).

   Printed in milliseconds and as ``one event = N training steps``.
2. The whole run: ``Trainer.fit`` of the example (3 epochs, 189 steps, an event at step 0, every 20 steps and at each
   epoch's end: 13 events) with the example's callback, and with ``TokenExplainCallback``'s default methods (no
   quality) at the same schedule, against the same fit without it (same seed, data and Trainer, a TensorBoard logger
   in every arm), alternating, median wall times and their ratio. The fit without the callback also
   gives the cost of a step inside Lightning (fit time / steps, validation included). Whole-fit ratios are noisy on a
   shared machine, so the time spent inside the callback's hooks is also measured and printed as ``1 + hooks / fit
   without``, an estimate that noise from other processes inflates less (PNG encoding and file writing run on the
   callback's background thread, outside the hooks).

    python benchmarks/bench_text_event.py --threads 2     # as the example runs on a 2-core CPU (about 4 minutes)
    python benchmarks/bench_text_event.py --quick         # a smoke run: tiny sizes, the numbers mean nothing
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
import transformers
from _common import ROOT, EncodingWriter, device_name, interleaved, parser, report, setup, sync
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_explain import TokenExplainCallback

HOOKS = ("setup", "on_train_start", "on_train_batch_start", "on_train_batch_end", "on_train_epoch_end", "teardown")
QUICK = ["--n-train", "64", "--n-val", "32", "--probe-size", "4", "--max-epochs", "1", "--every-n-steps", "1"]


def load_example():
    """``examples/text.py`` as a module."""
    spec = importlib.util.spec_from_file_location("text_example", ROOT / "examples" / "text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quiet() -> None:
    """No Lightning info lines and no data-loader warnings per fit."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    known = ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "lightning_utilities", "pytorch_lightning")
    for name in {*known, *(n for n in logging.root.manager.loggerDict if n.startswith("lightning"))}:
        logging.getLogger(name).setLevel(logging.WARNING)


def started_callbacks(example, args, parts: dict[str, Any], logdir: str) -> dict[str, TokenExplainCallback]:
    """The three configurations, started by one fit of one epoch (their step-0 event only), writers that encode."""
    options = dict(tokenizer=parts["tokenizer"], probe=parts["probe"], every_n_steps=None, every_n_epochs=None)
    callbacks = {
        "event: gradients": TokenExplainCallback(methods=("input_x_gradient", "saliency"), prefix="a", **options),
        "event: + integrated_gradients": TokenExplainCallback(methods=example.METHODS, prefix="b", **options),
        "event: + quality": example.explain_callback(parts, args),  # the example's own callback
    }
    one_epoch = argparse.Namespace(**{**vars(args), "max_epochs": 1})
    trainer = example.make_trainer(one_epoch, TensorBoardLogger(logdir, name="start"), list(callbacks.values()))
    example.fit(trainer, parts)
    for callback in callbacks.values():
        callback._writer = EncodingWriter()  # everything an event logs, PNG-encoded, no file write
    return callbacks


def event_runner(callback: TokenExplainCallback, model: torch.nn.Module):
    """One event of ``callback``: its ``_compute`` and ``_log_event``, as the callback runs them."""
    step = [10**6]

    def run() -> None:
        with torch.no_grad():
            callback._log_event(model, callback._compute(model), step[0])
        step[0] += 1

    return run


def training_step_runner(model, loader):
    """One training step of the example: ``self.model(**batch).loss``, backward, AdamW step (batches in turn)."""
    optimizer = model.configure_optimizers()
    batches = [batch for _, batch in zip(range(8), loader, strict=False)]
    index = [0]

    def run() -> None:
        model.train()
        batch = batches[index[0] % len(batches)]
        index[0] += 1
        loss = model.model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def event_costs(example, args, device: torch.device, repeats: int) -> tuple[dict[str, float], float]:
    """Part 1: one event of each configuration against one training step, interleaved; the ratios and the
    training step's median milliseconds."""
    seed_everything(args.seed, verbose=False)
    parts = example.build(args)
    with tempfile.TemporaryDirectory() as logdir:
        callbacks = started_callbacks(example, args, parts, logdir)
    model = parts["model"]
    contenders = {"training step": training_step_runner(model, parts["train_loader"])}
    contenders.update({name: event_runner(callback, model) for name, callback in callbacks.items()})
    gradients = callbacks["event: gradients"]
    contenders["attributions alone: gradients"] = lambda: gradients._compute(model)  # the event less its logging
    samples = interleaved(contenders, repeats, device)
    probe = parts["probe"]["input_ids"]
    title = f"one event vs one training step (probe {probe.shape[0]} texts x {probe.shape[1]} tokens)"
    ratios = report(title, samples, "training step")
    step_ms = statistics.median(samples["training step"]) * 1e3
    for name in callbacks:
        print(f"{name}: one event = {ratios[name]:.1f} training steps ({ratios[name] * step_ms:.0f} ms)")
    logging_ms = (ratios["event: gradients"] - ratios["attributions alone: gradients"]) * step_ms
    print(f"event: gradients, logging alone (token pictures, markdown, statistics): {logging_ms:.0f} ms")
    return ratios, step_ms


_hook_seconds = [0.0]


def timed(callback: TokenExplainCallback) -> TokenExplainCallback:
    """``callback`` with every hook it runs in a fit timed into ``_hook_seconds``."""
    for hook in HOOKS:
        original = getattr(callback, hook)

        def wrapper(*a, _original=original, **kw):
            start = time.perf_counter()
            try:
                return _original(*a, **kw)
            finally:
                _hook_seconds[0] += time.perf_counter() - start

        setattr(callback, hook, wrapper)
    return callback


def fit_seconds(example, args, callback: str | None, device: torch.device) -> tuple[float, float, int]:
    """One ``Trainer.fit`` of the example: ``(seconds, seconds inside the callback's hooks, steps)``.

    ``callback``: ``None``, ``"example"`` (the example's: three methods and quality) or ``"defaults"``
    (``TokenExplainCallback``'s default methods, no quality, at the example's schedule)."""
    seed_everything(args.seed, verbose=False)
    parts = example.build(args)  # data and tokenizer outside the timing
    made = {
        "example": lambda: example.explain_callback(parts, args),
        "defaults": lambda: TokenExplainCallback(
            tokenizer=parts["tokenizer"], probe=parts["probe"], every_n_steps=args.every_n_steps
        ),
    }
    callbacks = [timed(made[callback]())] if callback else []
    with tempfile.TemporaryDirectory() as logdir:
        trainer = example.make_trainer(args, TensorBoardLogger(logdir, name=""), callbacks)
        _hook_seconds[0] = 0.0
        sync(device)
        start = time.perf_counter()
        example.fit(trainer, parts)
        sync(device)
        return time.perf_counter() - start, _hook_seconds[0], trainer.global_step


def run_costs(example, args, device: torch.device, repeats: int, step_ms: float) -> dict[str, float]:
    """Part 2: the example's whole fit without a callback, with its callback and with the default methods,
    alternating."""
    fit_seconds(example, args, "example", device)  # warm-up
    arms = {
        "fit without callback": None,
        "fit with the example's callback": "example",
        "fit with the default methods": "defaults",
    }
    samples: dict[str, list[float]] = {name: [] for name in arms}
    hooks: dict[str, list[float]] = {name: [] for name in arms}
    steps = 0
    for round_index in range(repeats):
        for name in arms if round_index % 2 == 0 else reversed(list(arms)):
            seconds, in_hooks, steps = fit_seconds(example, args, arms[name], device)
            samples[name].append(seconds)
            hooks[name].append(in_hooks)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["fit without callback"]
    print(f"\n## the example's whole run ({steps} steps, {repeats} fits per arm, alternating)")
    print(f"{'arm':<34} {'median s':>9} {'ratio':>7}   all fits (s)")
    for name, median in medians.items():
        runs = " ".join(f"{v:.2f}" for v in samples[name])
        print(f"{name:<34} {median:>9.2f} {median / base:>6.3f}x   {runs}")
    in_hooks = statistics.median(hooks["fit with the example's callback"])
    in_default_hooks = statistics.median(hooks["fit with the default methods"])
    per_step = base / max(steps, 1) * 1e3
    print(f"time inside the callback's hooks per fit (median): {in_hooks:.2f} s; defaults {in_default_hooks:.2f} s")
    print(f"a step of the fit without the callback: {per_step:.1f} ms (validation and Lightning included)")
    if step_ms == step_ms:  # part 1 ran
        print(f"a bare training step (part 1): {step_ms:.1f} ms")
    ratios = {
        "run with callback / without": medians["fit with the example's callback"] / base,
        "run hook-time estimate 1 + hooks / without": 1 + in_hooks / base,
        "run with the default methods / without": medians["fit with the default methods"] / base,
        "run default methods hook-time estimate 1 + hooks / without": 1 + in_default_hooks / base,
    }
    for name, ratio in ratios.items():
        print(f"ratio {name} = {ratio:.3f}x")
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--fits", type=int, default=None, help="whole fits per arm in part 2 (default: 3)")
    p.add_argument("--parts", default="event,run", help="which parts, comma-separated (default: event,run)")
    args = p.parse_args(argv)
    device = setup(args)
    if device.type != "cpu":
        raise SystemExit("examples/text.py trains on the CPU (its Trainer sets accelerator='cpu').")
    quiet()
    example = load_example()
    transformers.logging.set_verbosity_error()
    example_argv = QUICK if args.quick else []
    example_args = example.parse_args(example_argv)
    repeats = args.repeats or (2 if args.quick else 15)
    fits = args.fits or (1 if args.quick else 3)
    print(f"device: {device_name(device)}; examples/text.py {' '.join(example_argv) or '(defaults)'}")
    ratios: dict[str, float] = {}
    step_ms = float("nan")
    if "event" in args.parts:
        event_ratios, step_ms = event_costs(example, example_args, device, repeats)
        ratios.update({f"{k} / training step": v for k, v in event_ratios.items() if k != "training step"})
    if "run" in args.parts:
        ratios.update(run_costs(example, example_args, device, fits, step_ms))
    return ratios


if __name__ == "__main__":
    main()
