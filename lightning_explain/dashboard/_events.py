"""Every step of the dashboard's tags, read from a log directory's event files and followed as they grow.

TensorBoard samples what it loads: ``--samples_per_plugin`` keeps 10 images per tag by default, and the
budget is per kind of data (``images``), never per tag, both in the Python loader and in the Rust data
server that ``--load_fast`` starts. Raising it for the whole ``images`` kind would make TensorBoard hold
every image of every tag, and a user's explicit ``--samples_per_plugin images=10`` would cut our tags
again. So the Explain tab reads the event files itself, keeping every step of the image tags under
``IMAGE_PREFIXES`` and of every scalar, and tails the files: each :meth:`LogdirReader.reload` reads only
the records written since the last one (and picks up new runs and new files), with the fast reader of
:mod:`lightning_explain._tfrecord`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightning_explain._tfrecord import RecordTail
from lightning_explain.cli._runs import EVENT_FILE_MARKER, RunData, _add_values

IMAGE_PREFIXES = ("explain", "overfit", "features", "sanity", "sanity_check", "activation_max")
"""First path components of the image tags the dashboard keeps (every step); other images stay in TensorBoard."""


def keeps_image(tag: str) -> bool:
    """Whether the dashboard keeps the images of ``tag``: its first path component is in ``IMAGE_PREFIXES``."""
    return tag.split("/", 1)[0] in IMAGE_PREFIXES


@dataclass
class RunState:
    """One run as read so far: its data, and a generation that grows whenever new values arrive."""

    name: str
    path: Path
    data: RunData = field(default_factory=RunData)
    generation: int = 0
    mtime: float = 0.0  # of the newest event file, when last read
    loaders: dict[str, RecordTail] = field(default_factory=dict)  # event file -> its reader
    plugin_of: dict[str, str] = field(default_factory=dict)

    def read_new(self) -> bool:
        """Read the records appended since the last call, from every event file; return whether any arrived."""
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2

        for file in sorted(f for f in os.listdir(self.path) if EVENT_FILE_MARKER in f):
            if file not in self.loaders:
                self.loaders[file] = RecordTail(self.path / file)
        changed = False
        for loader in self.loaders.values():
            for record in loader.read():
                try:
                    event = event_pb2.Event.FromString(record)
                except DecodeError:  # a damaged record: skip it, keep the rest
                    continue
                if event.HasField("summary"):
                    _add_values(self.data, event.step, event.summary.value, self.plugin_of, keeps_image)
                    changed = True
        if changed:
            self.generation += 1
            self.mtime = max(os.path.getmtime(self.path / f) for f in self.loaders)
        return changed


class LogdirReader:
    """The runs under a local log directory (any folder holding event files), read incrementally.

    Thread-safe: hold :attr:`lock` while using :attr:`runs`. ``min_interval`` seconds must pass between two
    reads of the disk unless ``force`` is given, so many requests in a row cost one read.
    """

    def __init__(self, logdir: str | os.PathLike, *, min_interval: float = 1.0) -> None:
        self.logdir = Path(logdir) if str(logdir) else None
        self.min_interval = min_interval
        self.runs: dict[str, RunState] = {}
        self.lock = threading.RLock()
        self._last_reload = -float("inf")

    def reload(self, *, force: bool = False) -> None:
        """Find new runs and read what every run's event files gained since the last reload."""
        with self.lock:
            if not force and time.monotonic() - self._last_reload < self.min_interval:
                return
            if self.logdir is not None and self.logdir.is_dir():
                for dirpath, dirnames, filenames in os.walk(self.logdir):
                    dirnames.sort()
                    if any(EVENT_FILE_MARKER in f for f in filenames):
                        name = Path(dirpath).relative_to(self.logdir).as_posix()
                        if name not in self.runs:
                            self.runs[name] = RunState(name=name, path=Path(dirpath))
                for run in self.runs.values():
                    if run.path.is_dir():
                        run.read_new()
            self._last_reload = time.monotonic()
