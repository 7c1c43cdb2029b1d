"""Send scalars, images and histograms to each of the trainer's loggers in the form it can take.

Each logger sits behind the adapter ("sink") for what it accepts (:mod:`~lightning_explain.callbacks._sinks`):
TensorBoard and Weights & Biases take scalars, images and histograms, MLflow scalars and images, any
other logger scalars and PNG files in its directory.

A logger that fails is isolated: the others still get the data, and the failure is a warning
shown once per logger and kind of error.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from lightning_explain._compat import MisconfigurationException, rank_zero_warn
from lightning_explain.callbacks._sinks import (  # each sink stays importable from here
    _FileSink,  # noqa: F401 - re-exported
    _logger_directory,  # noqa: F401 - re-exported
    _MLFlowSink,  # noqa: F401 - re-exported
    _Sink,
    _sink_for,
    _TensorBoardSink,
    _WandbSink,  # noqa: F401 - re-exported
)
from lightning_explain.render.png import encode_png

PNG_METADATA_KEY = "lightning-explain"
"""The PNG ``tEXt`` keyword under which :meth:`LogWriter.image` stores an image's metadata (JSON)."""


class WarnOnce:
    """Warn once per kind of problem, so a recurring fault does not flood the log."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.seen: set[str] = set()

    def __call__(self, kind: str, message: str) -> None:
        if kind not in self.seen:
            self.seen.add(kind)
            rank_zero_warn(f"{self.owner}: {message}")


MAX_PENDING_IMAGES = 4
"""Images that may wait for the background writer before :meth:`LogWriter.image` blocks."""


class LogWriter:
    """The trainer's loggers, each behind the adapter for what it accepts. Call only on global rank zero.

    A failure in one logger is a warning (once per logger and kind of error) and does not keep the
    data from the other loggers.
    """

    def __init__(self, loggers: list[Any], owner: str = "lightning_explain") -> None:
        self.loggers = list(loggers)
        self.sinks = [_sink_for(logger) for logger in self.loggers]
        self._warn = WarnOnce(owner)
        self._images: ThreadPoolExecutor | None = None  # started at the first image
        self._pending: deque[Future] = deque()

    @classmethod
    def for_trainer(cls, trainer: Any, owner: str, *, needs_images: bool) -> LogWriter:
        """Check the trainer's loggers at setup; raise without any, warn once for those that take no images."""
        if not trainer.loggers:
            raise MisconfigurationException(
                f"Cannot use {owner} with a Trainer that has no logger. Pass Trainer(logger=TensorBoardLogger('logs')) "
                "(or any other logger) or leave `logger` at its default."
            )
        writer = cls(trainer.loggers, owner)
        if not needs_images or not trainer.is_global_zero:  # other ranks never write: leave the loggers alone
            return writer
        blind = [sink.name for sink in writer.sinks if not sink.takes_images]
        if blind:
            if getattr(trainer, "fast_dev_run", False):
                message = (
                    "fast_dev_run replaces the loggers with a DummyLogger, so this run logs nothing; run without it."
                )
            elif writer.can_log_images:
                message = f"{', '.join(blind)} cannot take images (no log_dir or save_dir), so it gets only scalars."
            else:
                message = (
                    f"none of the loggers ({', '.join(blind)}) can take images, so only scalars will be logged. "
                    "Add a TensorBoardLogger or CSVLogger (or give the logger a log_dir) to see the heatmaps."
                )
            rank_zero_warn(f"{owner}: {message}")
        return writer

    @property
    def tensorboard(self) -> list[Any]:
        """The TensorBoard loggers, for what only TensorBoard shows (the model graph, text)."""
        return [sink.logger for sink in self.sinks if isinstance(sink, _TensorBoardSink)]

    @property
    def can_log_images(self) -> bool:
        """Whether any logger accepts images."""
        return any(sink.takes_images for sink in self.sinks)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Log scalars to every logger at ``step``."""
        if metrics:
            for sink in self.sinks:
                self._isolated(sink, "scalars", sink.scalars, metrics, step)

    def image(self, tag: str, image: np.ndarray, step: int, *, metadata: dict[str, Any] | None = None) -> None:
        """Log an ``uint8`` (H, W, 3) image to every logger that takes images.

        ``metadata`` (JSON-serialisable) travels inside the PNG as a ``tEXt`` chunk with the
        keyword :data:`PNG_METADATA_KEY` (TensorBoard and PNG files); a probe grid's cell layout,
        for instance, so a reader can find each sample in it.

        For TensorBoard and PNG files, encoding and writing run on one background thread, in
        order, so they overlap the next training steps (zlib and numpy release the GIL); at most
        ``MAX_PENDING_IMAGES`` wait at a time, and :meth:`flush` waits for all of them. Loggers
        that need their steps in order (W&B, MLflow) get the image here, before this returns.
        """
        self._write_image(tag, image, step, metadata, background=False)
        if not any(sink.takes_images and sink.writes_in_background for sink in self.sinks):
            return
        if self._images is None:
            self._images = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightning-explain-images")
        while self._pending and self._pending[0].done():
            self._pending.popleft()
        if len(self._pending) >= MAX_PENDING_IMAGES:
            self._pending.popleft().result()
        self._pending.append(self._images.submit(self._write_image, tag, image, step, metadata, background=True))

    def flush(self) -> None:
        """Wait until every image handed to :meth:`image` is written."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Write what is pending and stop the background thread (a later image starts a new one)."""
        self.flush()
        if self._images is not None:
            self._images.shutdown(wait=True)
            self._images = None
        for sink in self.sinks:
            sink.close()

    def _write_image(
        self, tag: str, image: np.ndarray, step: int, metadata: dict[str, Any] | None, *, background: bool
    ) -> None:
        """Write to the sinks that write in the background (``background=True``) or to the others."""
        encoded: list[bytes] = []

        def png() -> bytes:
            if not encoded:
                text = {PNG_METADATA_KEY: json.dumps(metadata, separators=(",", ":"))} if metadata else None
                encoded.append(encode_png(image, text=text))
            return encoded[0]

        for sink in self.sinks:
            if sink.takes_images and sink.writes_in_background == background:
                self._isolated(sink, "an image", sink.image, tag, image, png, step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """Log a histogram of ``values`` to the loggers that have histograms (TensorBoard, W&B)."""
        for sink in self.sinks:
            self._isolated(sink, "a histogram", sink.histogram, tag, values, step)

    def text(self, tag: str, text: str, step: int) -> None:
        """Log markdown ``text`` to the loggers that have a text panel (TensorBoard)."""
        for sink in self.sinks:
            self._isolated(sink, "text", sink.text, tag, text, step)

    def _isolated(self, sink: _Sink, what: str, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except Exception as error:  # noqa: BLE001 - one logger's failure must not cost the others their data
            self._warn(
                f"{id(sink)}-{type(error).__name__}",
                f"{sink.name} failed to log {what} ({type(error).__name__}: {error}); the other loggers still get "
                "it and later events are tried again (shown once per logger and kind of error).",
            )
