"""Our own TensorBoard event file, beside the logger's, and PNG files written whole or not at all.

The callbacks' images and histograms are the large records of a run. Written through the
TensorBoardLogger's ``SummaryWriter``, a failed write (a full disk) would happen on that
writer's shared thread, which then refuses every later record, Lightning's own
``log_metrics`` included, and the run dies. Written to a file of our own in the same
directory (so TensorBoard shows them in the same run), a failure stays ours: the record is
cut off again, the error is a warning, and the logger's writer never sees it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from lightning_explain._tfrecord import frame_record
from lightning_explain.render.png import image_summary

_COUNTER = itertools.count()
_SHARED: dict[str, list] = {}  # directory -> [EventFile, users]: the callbacks of one run share one file
_SHARED_LOCK = threading.Lock()


class EventFile:
    """An append-only TensorBoard event file ``events.out.tfevents.*.lightning_explain`` in ``directory``.

    Opened at the first record; safe to use from the image thread and the training thread at
    once. A record whose write fails is truncated away (so readers never meet a torn record) and
    the error raised to the caller; a file that cannot even be started is removed.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._file: Any = None
        self._lock = threading.Lock()

    def add_summary(self, summary: Any, step: int) -> None:
        """Append one ``Summary`` at ``step``."""
        from tensorboard.compat.proto.event_pb2 import Event

        with self._lock:
            if self._file is None:
                self._open(Event)
            self._append(Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())

    def close(self) -> None:
        """Close the file (a later record opens a new one)."""
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            self._file = None

    def _open(self, event_type: Any) -> None:
        os.makedirs(self.directory, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_COUNTER)}"
        path = os.path.join(self.directory, f"{name}.lightning_explain")
        self._file = open(path, "wb", buffering=0)  # unbuffered: a failure shows in the write that caused it
        try:
            self._append(event_type(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        except Exception:
            self._file.close()
            self._file = None
            with contextlib.suppress(OSError):
                os.remove(path)
            raise

    def _append(self, record: bytes) -> None:
        offset = self._file.tell()
        try:
            self._file.write(frame_record(record))  # TensorBoard's RecordWriter checksums in pure Python
        except Exception:
            with contextlib.suppress(OSError):  # cut the torn record off; truncating frees space, so it works
                self._file.truncate(offset)
                self._file.seek(offset)
            raise


class TensorBoardFile:
    """A TensorBoard logger's images and histograms, written to an :class:`EventFile` in its ``log_dir``.

    A writer without a ``log_dir`` (another ``SummaryWriter`` implementation) gets ``add_image``
    and ``add_histogram`` instead.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self._events: EventFile | None = None

    def _event_file(self) -> EventFile | None:
        if self._events is None:
            directory = getattr(self.logger.experiment, "log_dir", None)
            if not isinstance(directory, (str, os.PathLike)):
                return None
            with _SHARED_LOCK:
                entry = _SHARED.setdefault(os.path.abspath(os.fspath(directory)), [None, 0])
                if entry[0] is None:
                    entry[0] = EventFile(os.fspath(directory))
                entry[1] += 1
                self._events = entry[0]
        return self._events

    def image(self, tag: str, image: Any, png: Callable[[], bytes], step: int) -> None:
        """``image`` (uint8 HWC) as the PNG ``png()`` at ``step``."""
        events = self._event_file()
        if events is None:
            self.logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
            return
        events.add_summary(image_summary(tag, png(), height=image.shape[0], width=image.shape[1]), step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        """A histogram of ``values`` at ``step``, binned as ``SummaryWriter.add_histogram`` bins it."""
        events = self._event_file()
        if events is None:
            self.logger.experiment.add_histogram(tag, values, global_step=step)
            return
        from torch.utils.tensorboard.summary import histogram

        bins = getattr(self.logger.experiment, "default_bins", "auto")  # add_histogram's "tensorflow" bins
        events.add_summary(histogram(tag, values, bins), step)

    def text(self, tag: str, text: str, step: int) -> None:
        """Markdown ``text`` at ``step`` (TensorBoard's Text tab)."""
        events = self._event_file()
        if events is None:
            self.logger.experiment.add_text(tag, text, global_step=step)
            return
        from torch.utils.tensorboard.summary import text as text_summary

        events.add_summary(text_summary(tag, text), step)

    def close(self) -> None:
        """Stop using the event file; the last callback of the run to stop closes it."""
        if self._events is None:
            return
        with _SHARED_LOCK:
            entry = _SHARED[os.path.abspath(self._events.directory)]
            entry[1] -= 1
            if entry[1] == 0:
                self._events.close()
                del _SHARED[os.path.abspath(self._events.directory)]
        self._events = None


def write_whole(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a torn file, nothing left on failure."""
    temporary = path + ".tmp"
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
