"""One small adapter ("sink") per kind of logger, for what
:class:`~lightning_explain.callbacks._log_writer.LogWriter` sends it.

- TensorBoard: scalars, images and histograms through its ``SummaryWriter``;
- Weights & Biases: scalars, ``wandb.Image`` and ``wandb.Histogram`` through the logger;
- MLflow: scalars, and images through ``MlflowClient.log_image`` (no histograms);
- any other logger (``CSVLogger``, custom ones): scalars through ``log_metrics``, and images as PNG
  files ``<log_dir>/<tag>/step_<step>.png`` (``save_dir`` when it has no ``log_dir``); no histograms
  (the per-layer norms they summarise are logged as scalars anyway).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from lightning_explain._compat import MLFLOW_LOGGER_TYPES, TENSORBOARD_LOGGER_TYPES, WANDB_LOGGER_TYPES
from lightning_explain.callbacks._event_file import TensorBoardFile, write_whole


class _Sink:
    """One logger. The base takes scalars through ``log_metrics`` and drops images and histograms."""

    takes_images = False
    writes_in_background = False
    """Whether images may be written on the writer's background thread: only where a late write
    of an earlier step is harmless (TensorBoard, files). W&B drops steps older than its current one."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @property
    def name(self) -> str:
        return type(self.logger).__name__

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        self.logger.log_metrics(metrics, step=step)

    def image(self, tag: str, image: np.ndarray, png: Callable[[], bytes], step: int) -> None:
        """Log ``image`` (uint8 HWC); ``png()`` gives its PNG bytes, encoded once for all loggers."""

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        """Log markdown ``text`` (loggers without a text panel drop it)."""

    def close(self) -> None:
        """Release what the sink holds open (its own files)."""


class _TensorBoardSink(_Sink):
    """TensorBoard: images and histograms in an event file of our own beside the logger's (:class:`TensorBoardFile`)."""

    takes_images = True
    writes_in_background = True

    def __init__(self, logger: Any) -> None:
        super().__init__(logger)
        self._file = TensorBoardFile(logger)

    def image(self, tag: str, image: np.ndarray, png: Callable[[], bytes], step: int) -> None:
        """PNG-encoded by :func:`~lightning_explain.render.png.encode_png` (7x faster than PIL in ``add_image``)."""
        self._file.image(tag, image, png, step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        self._file.histogram(tag, values, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self._file.text(tag, text, step)

    def close(self) -> None:
        self._file.close()


class _WandbSink(_Sink):
    """Weights & Biases: ``WandbLogger.log_image`` and ``wandb.Histogram``, at the trainer's step."""

    takes_images = True

    def image(self, tag: str, image: np.ndarray, png: Callable[[], bytes], step: int) -> None:
        self.logger.log_image(key=tag, images=[image], step=step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        import wandb  # installed: the WandbLogger could not have been created without it

        self.logger.log_metrics({tag: wandb.Histogram(values)}, step=step)


class _MLFlowSink(_Sink):
    """MLflow: images through ``MlflowClient.log_image``; MLflow has no histograms."""

    takes_images = True

    def image(self, tag: str, image: np.ndarray, png: Callable[[], bytes], step: int) -> None:
        client = self.logger.experiment
        if "key" in inspect.signature(client.log_image).parameters:  # MLflow >= 2.12: a time series per key
            client.log_image(self.logger.run_id, image, key=tag, step=step)
        else:
            client.log_image(self.logger.run_id, image, artifact_file=f"{tag}/step_{step}.png")


class _FileSink(_Sink):
    """PNG files in the logger's directory, for loggers without an image API of their own."""

    writes_in_background = True

    def __init__(self, logger: Any) -> None:
        super().__init__(logger)
        self._directory: str | None = None
        self._resolved = False

    @property
    def directory(self) -> str | None:
        """The logger's ``log_dir``, else its ``save_dir``; asked once, when first needed (on rank zero)."""
        if not self._resolved:
            self._directory, self._resolved = _logger_directory(self.logger), True
        return self._directory

    @property
    def takes_images(self) -> bool:  # type: ignore[override]
        return self.directory is not None

    def image(self, tag: str, image: np.ndarray, png: Callable[[], bytes], step: int) -> None:
        if self.directory is None:
            return
        parts = [part for part in tag.split("/") if part not in ("", ".", "..")]
        folder = os.path.join(self.directory, *parts)
        os.makedirs(folder, exist_ok=True)
        write_whole(os.path.join(folder, f"step_{step}.png"), png())


def _logger_directory(logger: Any) -> str | None:
    for attribute in ("log_dir", "save_dir"):
        try:
            directory = getattr(logger, attribute, None)
        except Exception:  # noqa: BLE001 - a property that fails means: no directory
            directory = None
        if isinstance(directory, (str, os.PathLike)) and str(directory):
            return os.fspath(directory)
    return None


def _sink_for(logger: Any) -> _Sink:
    if isinstance(logger, TENSORBOARD_LOGGER_TYPES):
        return _TensorBoardSink(logger)
    if isinstance(logger, WANDB_LOGGER_TYPES):
        return _WandbSink(logger)
    if isinstance(logger, MLFLOW_LOGGER_TYPES):
        return _MLFlowSink(logger)
    return _FileSink(logger)
