"""Finding the runs in a log directory and reading their TensorBoard event files (no Lightning, no torch)."""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

EVENT_FILE_MARKER = "events.out.tfevents."
# A TFRecord is the payload framed by a length (8 bytes) and two CRCs (4 bytes each).
_RECORD_OVERHEAD = 16


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


@dataclass
class Run:
    """A directory that directly holds TensorBoard event files."""

    path: Path
    name: str  # relative to the log directory; "." when the log directory itself is the run
    event_files: list[Path]

    @property
    def mtime(self) -> float:
        """Modification time of the newest event file."""
        return max(f.stat().st_mtime for f in self.event_files)

    @property
    def size(self) -> int:
        """Total size of the event files in bytes."""
        return sum(f.stat().st_size for f in self.event_files)


@dataclass
class RunData:
    """What a run logged: ``{tag: {step: value}}`` for scalars and ``{tag: {step: png_bytes}}`` for images.

    When a step appears twice for one tag (a resumed run), the value written last wins.
    """

    scalars: dict[str, dict[int, float]] = field(default_factory=dict)
    images: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def scalar_series(self, tag: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs of a scalar tag, sorted by step."""
        return sorted(self.scalars[tag].items())

    def image_series(self, tag: str) -> list[tuple[int, bytes]]:
        """``(step, encoded image)`` pairs of an image tag, sorted by step."""
        return sorted(self.images[tag].items())


def find_runs(logdir: str | os.PathLike) -> list[Run]:
    """All runs under ``logdir`` (itself included), oldest first; a ``CLIError`` when there are none."""
    root = Path(logdir)
    if not root.exists():
        raise CLIError(f"log directory {str(root)!r} does not exist; pass the folder given to TensorBoardLogger")
    if not root.is_dir():
        raise CLIError(f"{str(root)!r} is not a directory; pass the folder that holds the runs' event files")
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        events = sorted(Path(dirpath) / f for f in filenames if EVENT_FILE_MARKER in f)
        if events:
            name = Path(dirpath).relative_to(root).as_posix()
            runs.append(Run(path=Path(dirpath), name=name, event_files=events))
    if not runs:
        raise CLIError(
            f"no TensorBoard event files ({EVENT_FILE_MARKER}*) under {str(root)!r}; "
            "pass the folder given to TensorBoardLogger, after a run has logged to it"
        )
    return sorted(runs, key=lambda r: (r.mtime, r.name))


def select_runs(runs: list[Run], pattern: str | None) -> list[Run]:
    """The newest run when ``pattern`` is None, else every run whose name matches the glob ``pattern``.

    Choosing the newest of several runs is said on stderr, so a new run in the folder never switches
    the output silently.
    """
    if pattern is None:
        if len(runs) > 1:
            others = ", ".join(r.name for r in runs[:-1])
            newest = runs[-1].name
            print(f"{len(runs)} runs found; reading the newest, {newest} (others: {others}; choose with --run GLOB)",
                  file=sys.stderr)  # fmt: skip
        return [runs[-1]]
    chosen = [r for r in runs if fnmatch.fnmatchcase(r.name, pattern)]
    if not chosen:
        names = ", ".join(r.name for r in runs)
        raise CLIError(f"no run matches --run {pattern!r}; the runs are: {names}")
    return chosen


def read_run(run: Run, *, images: bool = True, progress=None) -> RunData:
    """Read every scalar (and, when ``images``, every image) the run's event files hold, all steps kept.

    ``progress`` is called with the number of bytes read after each record.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    from lightning_explain._tfrecord import RecordTail

    data = RunData()
    plugin_of: dict[str, str] = {}  # tag -> plugin name, from the first value's metadata (tensor summaries)
    for path in run.event_files:
        for record in RecordTail(path).read():
            if progress is not None:
                progress(len(record) + _RECORD_OVERHEAD)
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError:  # a damaged record: skip it, keep the rest
                continue
            if event.HasField("summary"):
                _add_values(data, event.step, event.summary.value, plugin_of, images)
    return data


def _add_values(
    data: RunData, step: int, values: Iterable, plugin_of: dict[str, str], images: bool | Callable[[str], bool]
) -> None:
    """Sort one event's summary values into ``data``: legacy fields and TF2-style tensor summaries.

    ``images``: keep every image (True), none (False), or those whose tag the predicate accepts.
    """
    keep = images if callable(images) else (lambda tag: images)
    for value in values:
        kind = value.WhichOneof("value")
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            plugin_of.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
        if kind == "simple_value":
            data.scalars.setdefault(value.tag, {})[step] = float(value.simple_value)
        elif kind == "image" and keep(value.tag):
            data.images.setdefault(value.tag, {})[step] = value.image.encoded_image_string
        elif kind == "tensor":
            plugin = plugin_of.get(value.tag)
            if plugin == "scalars":
                from tensorboard.util import tensor_util

                data.scalars.setdefault(value.tag, {})[step] = float(tensor_util.make_ndarray(value.tensor))
            elif plugin == "images" and keep(value.tag) and len(value.tensor.string_val) > 2:
                # [width, height, image, ...]: the first image of the step.
                data.images.setdefault(value.tag, {})[step] = value.tensor.string_val[2]


def match_tags(tags: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The tags (sorted) that match any of the glob ``patterns``."""
    patterns = list(patterns)
    return sorted(t for t in tags if any(fnmatch.fnmatchcase(t, p) for p in patterns))
