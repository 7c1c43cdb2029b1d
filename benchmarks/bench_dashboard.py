"""The Explain tab's cost on a long run: reading every step, answering a poll, building a run's index.

Writes a run like a long training: ``--methods`` probe grids (real ``render_explanation_grid`` pictures with their
cell metadata) and four scalars each at ``--steps`` events, plus the ``overfit/*`` scalars. Then, interleaved:

- ``dashboard read``: the plugin's reader loading every event of the run (what the first visit of the tab costs),
  against ``EventAccumulator`` loading the same files unsampled (``size_guidance`` 0), TensorBoard's own loader;
- ``poll, nothing new``: a reload when no event was written (what every 3-second poll of an idle run costs);
- ``run index``: building the ``/run`` JSON of the whole run from scratch (parsing each PNG's metadata once) and
  once cached (the layouts of known PNGs kept, what a poll after one new event costs).

    python benchmarks/bench_dashboard.py [--steps 300 --methods 6]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from _common import interleaved, parser, report, setup

from lightning_explain.dashboard._events import LogdirReader
from lightning_explain.dashboard._index import run_index
from lightning_explain.render.grids import grid_metadata, render_explanation_grid
from lightning_explain.render.png import encode_png, image_summary


def write_run(path: Path, steps: int, methods: int) -> int:
    """The synthetic long run; returns the size of its event file in bytes."""
    from torch.utils.tensorboard import SummaryWriter

    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(8, 1, 28, 28, generator=generator)
    writer = SummaryWriter(str(path))
    outcomes = {"target": [0] * 8, "predicted": [0] * 8, "confidence": [0.5] * 8, "correct": [True] * 8}
    for step in range(steps):
        for m in range(methods):
            maps = torch.rand(8, 28, 28, generator=generator)
            image, cells = render_explanation_grid(inputs, maps, return_cells=True)
            array = image.numpy()
            meta = grid_metadata(f"method{m}", step, array.shape, cells, outcomes)
            png = encode_png(array, text={"lightning-explain": json.dumps(meta)})
            writer._get_file_writer().add_summary(image_summary(f"explain/method{m}", png, *array.shape[:2]), step)
            for stat in ("concentration", "change", "mean", "deletion_auc"):
                writer.add_scalar(f"explain/method{m}/{stat}", float(step % 7), step)
        for signal in ("alert", "val_loss", "train_loss", "accuracy_gap"):
            writer.add_scalar(f"overfit/{signal}", float(step % 3 == 0), step)
    writer.close()
    return sum(f.stat().st_size for f in path.iterdir())


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="events in the run (default: 300)")
    p.add_argument("--methods", type=int, default=6, help="probe grids per event (default: 6)")
    args = p.parse_args(argv)
    device = setup(args)
    steps, methods = (6, 2) if args.quick else (args.steps, args.methods)
    repeats = args.repeats or (2 if args.quick else 7)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        run = Path(tmp) / "run"
        size = write_run(run, steps, methods)
        print(f"run: {steps} events x {methods} grids, {steps * methods} PNGs, event file {size / 1e6:.1f} MB")

        def dashboard_read():
            reader = LogdirReader(tmp)
            reader.reload(force=True)
            return reader

        def accumulator_read():
            EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()

        ratios = report(
            "first read of the whole run",
            interleaved({"EventAccumulator": accumulator_read, "dashboard read": dashboard_read}, repeats, device),
            "EventAccumulator",
        )
        reader = dashboard_read()
        state = reader.runs["run"]
        cache: dict = {}
        run_index("run", state.data, cache=cache)
        contenders = {
            "run index, cached layouts": lambda: run_index("run", state.data, cache=cache),
            "run index, from scratch": lambda: run_index("run", state.data),
            "poll, nothing new": lambda: reader.reload(force=True),
        }
        ratios |= report(
            "a poll and a run's index", interleaved(contenders, repeats, device), "run index, from scratch"
        )
        body = json.dumps(run_index("run", state.data), separators=(",", ":"))
        held = sum(len(png) for series in state.data.images.values() for png in series.values())
        print(f"/run JSON: {len(body) / 1e3:.0f} kB; PNG bytes held in memory: {held / 1e6:.1f} MB")
    return ratios


if __name__ == "__main__":
    main()
