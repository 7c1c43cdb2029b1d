"""Lightning's two namespaces: ``lightning.pytorch`` (always used) and ``pytorch_lightning`` (when installed).

The two packages hold separate copies of every class, and a Trainer of one namespace does not
accept the other's objects: ``Trainer(callbacks=cb)`` and ``LightningCLI``'s ``trainer.callbacks``
check ``isinstance(cb, Callback)`` against their own class. So the callbacks of this package
derive from both namespaces' ``Callback`` when ``pytorch_lightning`` imports, the exception raised
for a bad configuration is both namespaces' ``MisconfigurationException``, and logger checks
accept both namespaces' classes. ``pytorch_lightning`` is optional: without it (or with a broken
install of it) everything here is the ``lightning`` namespace alone.
"""

from __future__ import annotations

import importlib
from typing import Any

from lightning.fabric.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.fabric.utilities.exceptions import MisconfigurationException as _MisconfigurationException
from lightning.pytorch import Callback as _Callback
from lightning.pytorch.loggers import MLFlowLogger as _MLFlowLogger
from lightning.pytorch.loggers import WandbLogger as _WandbLogger

# Both namespaces share lightning_utilities' rank-zero helpers (one ``rank_zero_only.rank``).
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = [
    "CALLBACK_BASES",
    "MLFLOW_LOGGER_TYPES",
    "MisconfigurationException",
    "TENSORBOARD_LOGGER_TYPES",
    "WANDB_LOGGER_TYPES",
    "rank_zero_info",
    "rank_zero_warn",
]


def _standalone(module: str, name: str) -> Any:
    """``module.name`` from the standalone packages, or None when they are missing or fail to import."""
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - an optional package must never break this one
        return None


def _with_standalone(own: type, module: str, name: str) -> tuple[type, ...]:
    other = _standalone(module, name)
    return (own,) if other is None or other is own else (own, other)


#: ``Callback`` classes of the installed namespaces; our callbacks derive from all of them.
CALLBACK_BASES: tuple[type, ...] = _with_standalone(_Callback, "pytorch_lightning", "Callback")

#: TensorBoard loggers of Fabric and of both Trainer namespaces (each derives from a Fabric one).
TENSORBOARD_LOGGER_TYPES = _with_standalone(_TensorBoardLogger, "lightning_fabric.loggers", "TensorBoardLogger")

#: Weights & Biases loggers; importing their classes does not need ``wandb``.
WANDB_LOGGER_TYPES = _with_standalone(_WandbLogger, "pytorch_lightning.loggers", "WandbLogger")

#: MLflow loggers; importing their classes does not need ``mlflow``.
MLFLOW_LOGGER_TYPES = _with_standalone(_MLFlowLogger, "pytorch_lightning.loggers", "MLFlowLogger")

_MISCONFIGURATION_BASES = _with_standalone(
    _MisconfigurationException, "lightning_fabric.utilities.exceptions", "MisconfigurationException"
)


class MisconfigurationException(*_MISCONFIGURATION_BASES):  # type: ignore[misc]
    """A configuration problem found at setup or fit start.

    Caught by ``except MisconfigurationException`` with the class of either namespace.
    """
