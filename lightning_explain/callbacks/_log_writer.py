"""Send scalars, images and histograms to whichever of the trainer's loggers can take them."""

from __future__ import annotations

from typing import Any

import numpy as np
from lightning.fabric.loggers import TensorBoardLogger as FabricTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_explain.png import encode_png, image_summary


def _tensorboard_logger_types() -> tuple[type, ...]:
    types: list[type] = [FabricTensorBoardLogger]
    try:  # the standalone namespace, when it is installed
        from lightning_fabric.loggers import TensorBoardLogger as StandaloneTensorBoardLogger

        types.append(StandaloneTensorBoardLogger)
    except ImportError:
        pass
    return tuple(types)


class LogWriter:
    """The trainer's loggers, split by what they accept.

    Scalars go to every logger through ``log_metrics``; images and histograms go to the
    TensorBoard loggers through their ``SummaryWriter``. Call only on global rank zero.
    """

    def __init__(self, loggers: list[Any]) -> None:
        self.loggers = list(loggers)
        tensorboard_types = _tensorboard_logger_types()
        self.tensorboard = [lg for lg in self.loggers if isinstance(lg, tensorboard_types)]

    @classmethod
    def for_trainer(cls, trainer: Any, owner: str, *, needs_images: bool) -> LogWriter:
        """Check the trainer's loggers at setup; raise without any, warn once without image support."""
        if not trainer.loggers:
            raise MisconfigurationException(
                f"Cannot use {owner} with a Trainer that has no logger: it logs to TensorBoard. "
                "Pass Trainer(logger=TensorBoardLogger('logs')) or leave `logger` at its default."
            )
        writer = cls(trainer.loggers)
        if needs_images and not writer.tensorboard:
            names = ", ".join(type(lg).__name__ for lg in writer.loggers)
            rank_zero_warn(
                f"{owner}: none of the loggers ({names}) can take images, so only scalars will be logged. "
                "Add a TensorBoardLogger to see the heatmaps."
            )
        return writer

    @property
    def can_log_images(self) -> bool:
        """Whether any logger accepts images."""
        return bool(self.tensorboard)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Log scalars to every logger at ``step``."""
        if metrics:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Log an ``uint8`` (H, W, 3) image, PNG-encoded once by :func:`encode_png` (PIL's default is slow)."""
        if not self.tensorboard:
            return
        summary = image_summary(tag, encode_png(image), height=image.shape[0], width=image.shape[1])
        for logger in self.tensorboard:
            writer = logger.experiment
            if hasattr(writer, "_get_file_writer"):  # what SummaryWriter.add_image itself writes through
                writer._get_file_writer().add_summary(summary, step)
            else:
                writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """Log a histogram of ``values``."""
        for logger in self.tensorboard:
            logger.experiment.add_histogram(tag, values, global_step=step)


class WarnOnce:
    """Warn once per kind of problem, so a recurring fault does not flood the log."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.seen: set[str] = set()

    def __call__(self, kind: str, message: str) -> None:
        if kind not in self.seen:
            self.seen.add(kind)
            rank_zero_warn(f"{self.owner}: {message}")
