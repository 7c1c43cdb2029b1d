"""ExplainCallback(quality=...): each method's deletion AUC, insertion AUC and pointing game at the first and last
event, beside random maps, and what quality costs an event.

Two real training runs, each with the real callback, its scalars read back from the TensorBoard files:

- ``digits``: the README demo (``examples/digits.py``: its data module, model and methods, Grad-CAM and
  integrated gradients from a blank page); digits have no masks, so deletion and insertion only;
- ``shortcut``: ``examples/overfitting.py``'s shortcut scenario (its data, model and training loop: planted
  shapes with a class-coded corner marker on the training images only); two callbacks, one on the first 16
  validation images (no marker), one on the first 16 training images (marker), ``masks=`` their shapes' bounding
  boxes; Grad-CAM and saliency.

The first event is the callback's baseline event at step 0 (the untrained model), the last the end of training.
After each fit, the cost: one whole event (``_explain`` + ``_log_event``, the callback's own code, images PNG-encoded
but not written) with quality on and with it off, on the trained model, interleaved, medians and their ratio.

    python benchmarks/quality_table.py              # both runs (a few minutes on a CPU)
    python benchmarks/quality_table.py --quick      # a smoke run: the numbers mean nothing
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings

import torch
from _common import ROOT, EncodingWriter, device_name, interleaved, parser, report, setup
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_explain import ExplainCallback

METRICS = ("deletion_auc", "insertion_auc", "pointing_game")
ARROWS = {"deletion_auc": "↓", "insertion_auc": "↑", "pointing_game": "↑"}


def load_example(name: str):
    """An example script as a module (``examples/<name>.py``), to use its data and model builders."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_scalars(log_dir: str, prefix: str = "explain") -> dict[str, list[tuple[int, float]]]:
    """Every scalar series whose tag starts with ``prefix`` of a TensorBoard run: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith(prefix)
    }


def table_rows(
    run: str, scalars: dict[str, list[tuple[int, float]]], methods: list[str], prefix: str = "explain"
) -> list[str]:
    """One row per method and random maps: each metric at the first and the last event."""
    rows = []
    for method in [*methods, "random"]:
        cells = []
        for metric in METRICS:
            series = scalars.get(f"{prefix}/{method}/{metric}")
            cells.append(f"{series[0][1]:.3f} → {series[-1][1]:.3f}" if series else "—")
        first, last = _steps(scalars, f"{prefix}/{method}")
        rows.append(f"| {run} | {method} | {first} → {last} | " + " | ".join(cells) + " |")
    return rows


def _steps(scalars: dict[str, list[tuple[int, float]]], key: str) -> tuple[str, str]:
    series = scalars.get(f"{key}/deletion_auc")
    return (str(series[0][0]), str(series[-1][0])) if series else ("—", "—")


def event_cost(callback: ExplainCallback, model, device: torch.device, repeats: int, run: str) -> dict[str, float]:
    """Seconds of one event with quality on and off (same callback, same trained model), interleaved."""
    callback._writer = EncodingWriter()  # the run's files stay as the fit wrote them
    quality = callback.quality
    model.eval()

    def event(on: bool):
        def run_event() -> None:
            callback.quality = quality if on else ()
            try:
                with torch.no_grad():
                    callback._log_event(model, callback._explain(model), 10**6)
            finally:
                callback.quality = quality

        return run_event

    samples = interleaved({"quality on": event(True), "quality off": event(False)}, repeats, device)
    return report(
        f"{run}: one event, quality={quality} vs off (probe {len(callback.probe.inputs)})", samples, "quality off"
    )


def run_digits(args, logdir: str) -> tuple[list[str], dict[str, float]]:
    demo = load_example("digits")
    seed_everything(0, verbose=False)
    data = demo.DigitsDataModule()
    data.setup("fit")
    methods = list(demo.METHODS)
    options = {"integrated_gradients": {"baseline": data.background, "steps": 16}}
    callback = ExplainCallback(
        every_n_steps=args.every_n_steps, methods=methods, method_options=options, quality=("deletion", "insertion")
    )
    logger = TensorBoardLogger(logdir, name="digits")
    limits = {"limit_train_batches": 3, "limit_val_batches": 1} if args.quick else {}
    trainer = Trainer(
        max_epochs=1 if args.quick else args.digits_epochs,
        **limits,
        logger=logger,
        callbacks=[callback],
        log_every_n_steps=10,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        deterministic=True,
        accelerator="cpu",
    )
    model = demo.DigitsCNN()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|bottleneck|log_every_n_steps).*")
        trainer.fit(model, datamodule=data)
    rows = table_rows("digits", read_scalars(logger.log_dir), methods)
    return rows, event_cost(callback, model, torch.device("cpu"), args.repeats, "digits")


def run_shortcut(args, logdir: str) -> tuple[list[str], dict[str, float]]:
    example = load_example("overfitting")
    seed = 0
    train, val = example.make_data("shortcut", seed)
    if args.quick:
        train = example.make_shapes(64, seed=seed, marker=True, noise=example.NOISE)
    methods = ["grad_cam", "saliency"]
    quality = ("deletion", "insertion", "pointing_game", "energy_in_mask")
    probes = {"explain": val, "explain_train": train}  # validation images (no marker), training images (marker)
    callbacks = [
        ExplainCallback(
            probe=(data.images[: args.probe], data.labels[: args.probe]),
            methods=methods,
            every_n_epochs=1,
            quality=quality,
            masks=data.masks[: args.probe],
            prefix=prefix,
        )
        for prefix, data in probes.items()
    ]
    logger = TensorBoardLogger(logdir, name="shortcut")
    epochs = 1 if args.quick else example.SCENARIOS["shortcut"]["epochs"]
    model, _ = example.fit_shapes(train, val, seed=seed, epochs=epochs, callbacks=callbacks, logger=logger)
    scalars = read_scalars(logger.log_dir, prefix="")
    rows = table_rows("shortcut, validation probe (no marker)", scalars, methods, "explain")
    rows += table_rows("shortcut, training probe (marker)", scalars, methods, "explain_train")
    return rows, event_cost(callbacks[0], model, torch.device("cpu"), args.repeats, "shortcut")


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="digits,shortcut", help="which runs, comma-separated (default: both)")
    p.add_argument("--digits-epochs", type=int, default=10, help="epochs of the digits run (default: 10, the demo's)")
    p.add_argument("--every-n-steps", type=int, default=10, help="digits: an event every N steps (the demo's 10)")
    p.add_argument("--probe", type=int, default=16, help="shortcut: probe samples (default: 16)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    if args.quick:
        args.probe = min(args.probe, 4)
    device = setup(args)
    print(f"device: {device_name(device)}")
    runs = {"digits": run_digits, "shortcut": run_shortcut}
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as logdir:
        for name in args.runs.split(","):
            run_rows, run_ratios = runs[name](args, logdir)
            rows += run_rows
            ratios.update({f"{name}: {k}": v for k, v in run_ratios.items()})
    header = " | ".join(f"{m} {ARROWS[m]} (first → last)" for m in METRICS)
    print("\n## Quality at the first and the last event (mean over the probe)\n")
    print(f"| run | maps | steps | {header} |")
    print("|---|---|---|" + "---|" * len(METRICS))
    print("\n".join(rows))
    return {k: v for k, v in ratios.items() if not k.endswith("quality off")}


if __name__ == "__main__":
    main()
