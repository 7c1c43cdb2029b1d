"""The ``report`` subcommand: the Explain tab's view of a log folder, frozen into one HTML file to share."""

from __future__ import annotations

import argparse


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``report`` to the subcommands ``sub`` (``common``: the shared LOGDIR and --run arguments)."""
    from lightning_explain.dashboard.report import DEFAULT_MAX_STEPS  # here: the dashboard imports cli._runs

    parser = sub.add_parser(
        "report",
        parents=[common],
        help="one self-contained HTML file of the Explain dashboard, to share",
        description="Write the Explain tab's view (one step slider for every method, a sample's filmstrip, "
        "the signals with the alerts) as one HTML file with every image embedded: no server, no network. "
        "The newest run is included unless --run GLOB chooses (--run '*': every run, to compare them), "
        "every image tag unless --tag GLOB chooses; "
        "each image tag keeps at most --max-steps steps, "
        "evenly spaced with the first and the last, so the file stays small enough to attach.",
    )
    parser.add_argument("-o", "--output", default="report.html", metavar="OUT", help="HTML path (default: report.html)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULT_MAX_STEPS,
        metavar="N",
        help=f"steps per image tag (default: {DEFAULT_MAX_STEPS}; 0 keeps all)",
    )
    parser.add_argument("--title", help="the page's title (default: the log folder's name)")
    return parser


def run(args: argparse.Namespace) -> None:
    """The ``report`` subcommand: write the file and say what it holds."""
    import glob

    from lightning_explain.cli._runs import find_runs
    from lightning_explain.dashboard.report import write_report

    runs = args.run if args.run is not None else glob.escape(find_runs(args.logdir)[-1].name)  # the newest
    stats = write_report(
        args.logdir, args.output, runs=runs, tags=args.tag, max_steps=args.max_steps or None, title=args.title
    )
    print(
        f"{stats.path}: {len(stats.runs)} run(s) ({', '.join(stats.runs)}), {stats.images} images, "
        f"{stats.size / 1e6:.1f} MB"
    )
