"""The Explain tab frozen into one self-contained HTML file: the same page, its data and images embedded.

The page's scripts and style are the plugin's own static files, inlined; the images are PNG data URIs; nothing
is fetched from the network, so the file can be attached to a pull request or an issue and opened anywhere.
"""

from __future__ import annotations

import base64
import fnmatch
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lightning_explain.cli._runs import CLIError, RunData
from lightning_explain.cli._timelapse import evenly_spaced
from lightning_explain.dashboard._events import LogdirReader
from lightning_explain.dashboard._index import run_index, run_summary

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATE = Path(__file__).resolve().parent / "report_template.html"
DEFAULT_MAX_STEPS = 50


@dataclass(frozen=True)
class ReportStats:
    """What :func:`write_report` wrote: the file, its size in bytes, the runs and the number of images."""

    path: Path
    size: int
    runs: list[str]
    images: int


def page_scripts() -> list[str]:
    """The page's script files in load order, as ``static/index.js`` lists them (one list for tab and report)."""
    match = re.search(r"SCRIPTS\s*=\s*\[([^\]]*)\]", (STATIC_DIR / "index.js").read_text(encoding="utf-8"))
    if match is None:  # pragma: no cover - the shipped index.js has the list
        raise RuntimeError("static/index.js has no SCRIPTS list")
    return re.findall(r"'([^']+)'", match.group(1))


def _inline(text: str, what: str) -> str:
    """Text safe inside a ``<script>`` or ``<style>`` element."""
    if re.search(r"</(script|style)", text, re.IGNORECASE):
        raise RuntimeError(f"{what} holds a closing tag and cannot be inlined")
    return text


def build_data(
    reader: LogdirReader, names: list[str], max_steps: int | None, title: str, tags: list[str] | None = None
) -> dict:
    """The report's embedded data: run summaries, each run's index and its images as data URIs.

    ``tags``: globs; only the image tags matching one are embedded (default: all).
    """
    data: dict = {"title": title, "logdir": str(reader.logdir), "runs": [], "indexes": {}, "images": {}}
    for name in names:
        run = reader.runs[name]
        chosen = {}
        for tag, series in run.data.images.items():
            if tags and not any(fnmatch.fnmatchcase(tag, pattern) for pattern in tags):
                continue
            steps = sorted(series)
            chosen[tag] = [steps[i] for i in evenly_spaced(len(steps), max_steps)]
        data["runs"].append(run_summary(name, run.data, run.generation, run.mtime))
        images = RunData(scalars=run.data.scalars, images={tag: run.data.images[tag] for tag in chosen})
        data["indexes"][name] = run_index(name, images, run.generation, steps=chosen)
        data["images"][name] = {
            tag: {
                str(step): "data:image/png;base64," + base64.b64encode(run.data.images[tag][step]).decode("ascii")
                for step in steps
            }
            for tag, steps in chosen.items()
        }
    return data


def write_report(
    logdir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    runs: str | None = None,
    tags: list[str] | None = None,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    title: str | None = None,
) -> ReportStats:
    """Write the dashboard of the runs under ``logdir`` to one HTML file at ``output``.

    Args:
        logdir: the TensorBoard log folder (a run, or a folder of runs).
        output: the HTML file to write.
        runs: a glob on the runs' paths relative to ``logdir`` (default: every run).
        tags: globs on the image tags to embed (default: every image tag the dashboard shows).
        max_steps: at most this many steps of each image tag, evenly spaced, first and last kept (None: all);
            scalars keep every point.
        title: the page's title (default: "lightning-explain report: <logdir>").

    Raises:
        CLIError: no such folder, no runs, or no run matching ``runs``.
    """
    if max_steps is not None and max_steps < 1:
        raise CLIError(f"--max-steps must be positive (0 keeps every step), got {max_steps}")
    root = Path(logdir)
    if not root.is_dir():
        raise CLIError(f"log directory {str(root)!r} does not exist or is not a folder")
    reader = LogdirReader(root)
    reader.reload(force=True)
    names = sorted(reader.runs)
    if not names:
        raise CLIError(f"no TensorBoard event files under {str(root)!r}; pass the folder given to TensorBoardLogger")
    if runs is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, runs)]
        if not names:
            raise CLIError(f"no run matches --run {runs!r}; the runs are: {', '.join(sorted(reader.runs))}")
    title = title or f"lightning-explain report: {root.resolve().name}"
    data = build_data(reader, names, max_steps, title, tags)
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    sources = [(name, (STATIC_DIR / name).read_text(encoding="utf-8")) for name in page_scripts()]
    scripts = "\n".join(f"<script>\n{_inline(text, name)}\n</script>" for name, text in sources)
    fields = {
        "TITLE": html.escape(title),
        "STYLE": _inline((STATIC_DIR / "style.css").read_text(encoding="utf-8"), "style.css"),
        "DATA": payload,
        "SCRIPTS": scripts,
    }
    page = re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fields[m.group(1)], TEMPLATE.read_text(encoding="utf-8"))
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    images = sum(len(steps) for run in data["images"].values() for steps in run.values())
    return ReportStats(path=out, size=out.stat().st_size, runs=names, images=images)
