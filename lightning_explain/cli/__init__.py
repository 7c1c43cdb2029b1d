"""The ``lightning-explain`` command: look at a finished (or running) run's TensorBoard logs without TensorBoard.

    lightning-explain timelapse LOGDIR [-o timelapse.gif] [--tag GLOB] [--fps 4] [--max-frames N]
    lightning-explain summary LOGDIR [--tag GLOB] [--format text|markdown|csv]
    lightning-explain report LOGDIR [-o report.html] [--max-steps 50]

``LOGDIR`` is the folder given to ``TensorBoardLogger`` (or any folder above or at a run). A run is a folder
that holds ``events.out.tfevents.*`` files, such as ``logs/digits/version_0``; the newest run is used unless
``--run GLOB`` chooses (matched against the run's path relative to ``LOGDIR``). Every logged step is read,
whatever TensorBoard's own sampling would keep. Also available as ``python -m lightning_explain``.

Exit codes: 0 on success, 2 for a problem with the input (a missing folder, no runs, no matching tags),
reported as one line on stderr that says what to change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_explain.cli import _report
from lightning_explain.cli._runs import CLIError, Run, RunData, find_runs, match_tags, read_run, select_runs
from lightning_explain.cli._summary import DEFAULT_TAG_PATTERNS, format_csv, format_table, summarize

__all__ = ["main", "build_parser"]

PROG = "lightning-explain"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lightning-explain`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{timelapse,summary,report}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("logdir", metavar="LOGDIR", help="TensorBoard log folder (a run, or a folder of runs)")
    common.add_argument("--run", metavar="GLOB", help="which run(s), by path relative to LOGDIR (default: the newest)")
    common.add_argument("--tag", action="append", metavar="GLOB", help="tags to use (a glob; repeat for several)")
    common.add_argument(
        "--progress", action="store_true", help="show a progress bar even when stderr is not a terminal"
    )

    tl = sub.add_parser(
        "timelapse",
        parents=[common],
        help="animated GIF and contact sheet of each image tag",
        description="Write an animated GIF and a contact-sheet PNG of how each image tag (default: explain/*) "
        "evolved, every frame stamped with its step. One tag: OUT and <OUT stem>_sheet.png. Several tags: "
        "<OUT stem>_<name>.gif and <OUT stem>_<name>_sheet.png, <name> being the tag without the parts all "
        "the tags share (explain/saliency: saliency).",
    )
    tl.add_argument("-o", "--output", default="timelapse.gif", metavar="OUT", help="GIF path (default: timelapse.gif)")
    tl.add_argument("--fps", type=float, default=4.0, help="GIF frames per second (default: 4)")
    tl.add_argument("--max-frames", type=int, metavar="N", help="use at most N steps, evenly spaced (default: all)")
    tl.add_argument(
        "--sheet-frames", type=int, default=16, metavar="N", help="frames on the contact sheet (default: 16)"
    )
    tl.add_argument("--columns", type=int, metavar="N", help="contact-sheet columns (default: about square)")

    sm = sub.add_parser(
        "summary",
        parents=[common],
        help="table of the scalars: first, last, min, max",
        description="Print, for each scalar tag, the first and last value, the min and max with their steps and "
        "the number of points. Default tags: " + ", ".join(DEFAULT_TAG_PATTERNS) + "; --tag '*' shows all. "
        "With --run GLOB matching several runs, one table per run.",
    )
    sm.add_argument(
        "--format", choices=("text", "markdown", "csv"), default="text", help="table format (default: text)"
    )
    _report.add_parser(sub, common)
    return parser


def _read(run: Run, *, images: bool, progress: bool) -> RunData:
    """Read a run, with a tqdm progress bar on stderr when ``progress``."""
    if not progress:
        return read_run(run, images=images)
    from tqdm import tqdm

    with tqdm(total=run.size, unit="B", unit_scale=True, desc=f"reading {run.name}", file=sys.stderr) as bar:
        return read_run(run, images=images, progress=bar.update)


def _run_timelapse(args: argparse.Namespace, progress: bool) -> None:
    """The ``timelapse`` subcommand."""
    from lightning_explain.cli import _timelapse as tl

    for name, value in (("--fps", args.fps), ("--sheet-frames", args.sheet_frames)):
        if value <= 0:
            raise CLIError(f"{name} must be positive, got {value}")
    for name, value in (("--max-frames", args.max_frames), ("--columns", args.columns)):
        if value is not None and value <= 0:
            raise CLIError(f"{name} must be positive, got {value}")
    runs = select_runs(find_runs(args.logdir), args.run)
    if len(runs) > 1:
        raise CLIError(f"--run {args.run!r} matches {len(runs)} runs ({', '.join(r.name for r in runs)}); choose one")
    run = runs[0]
    data = _read(run, images=True, progress=progress)
    if not data.images:
        raise CLIError(
            f"run {run.name!r} has no images; its scalar tags are: {', '.join(sorted(data.scalars)) or 'none'} "
            "(log explanations with ExplainCallback and a logger that takes images, e.g. TensorBoardLogger)"
        )
    tags = match_tags(data.images, args.tag or ["explain/*"])
    if not tags:
        raise CLIError(
            f"no image tag of run {run.name!r} matches {' '.join(args.tag or ['explain/*'])}; "
            f"its image tags are: {', '.join(sorted(data.images))} (choose with --tag)"
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for tag in tags:
        series = data.image_series(tag)
        series = [series[i] for i in tl.evenly_spaced(len(series), args.max_frames)]
        frames = [tl.stamp(tl.decode(png), f"{tag}  step {step}") for step, png in series]
        gif_path, sheet_path = tl.output_paths(out, tag, tags)
        tl.write_gif(frames, gif_path, fps=args.fps)
        picked = [frames[i] for i in tl.evenly_spaced(len(frames), args.sheet_frames)]
        tl.contact_sheet(picked, columns=args.columns).save(sheet_path)
        print(f"{tag}: {len(frames)} frames (steps {series[0][0]}-{series[-1][0]}) -> {gif_path}, {sheet_path}")


def _run_summary(args: argparse.Namespace, progress: bool) -> None:
    """The ``summary`` subcommand."""
    runs = select_runs(find_runs(args.logdir), args.run)
    tables = []
    for run in runs:
        data = _read(run, images=False, progress=progress)
        rows = summarize(data, args.tag or DEFAULT_TAG_PATTERNS)
        if not rows and (args.tag or len(runs) == 1):
            raise CLIError(
                f"no scalar tag of run {run.name!r} matches {' '.join(args.tag or DEFAULT_TAG_PATTERNS)}; "
                f"its scalar tags are: {', '.join(sorted(data.scalars)) or 'none'} (choose with --tag)"
            )
        tables.append((run, rows))
    if args.format == "csv":
        print(format_csv([(run.name, rows) for run, rows in tables]), end="")
        return
    for i, (run, rows) in enumerate(tables):
        heading = f"{'## ' if args.format == 'markdown' else ''}run {run.name} ({run.path})"
        print(
            ("\n" if i else "") + heading + "\n" + (format_table(rows, args.format) if rows else "(no scalars)\n"),
            end="",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return 0, or exit with code 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = args.progress or sys.stderr.isatty()
    commands = {"timelapse": _run_timelapse, "summary": _run_summary, "report": lambda a, p: _report.run(a)}
    try:
        commands[args.command](args, progress)
    except CLIError as err:
        parser.exit(2, f"{PROG} {args.command}: error: {err}\n")
    return 0
