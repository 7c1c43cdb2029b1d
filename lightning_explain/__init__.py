"""lightning-explain: PyTorch Lightning callbacks that show what a model looks at while it trains.

Example:
    >>> from lightning.pytorch import Trainer  # doctest: +SKIP
    >>> from lightning_explain import ExplainCallback, GradientNormMonitor  # doctest: +SKIP
    >>> trainer = Trainer(callbacks=[ExplainCallback(), GradientNormMonitor()])  # doctest: +SKIP

The public names are imported on first use, so ``lightning-explain`` (the command line) starts
without loading torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ActivationMaximizationCallback": "lightning_explain.callbacks",
    "ExplainCallback": "lightning_explain.callbacks",
    "FeatureExplainCallback": "lightning_explain.callbacks",
    "GradientNormMonitor": "lightning_explain.callbacks",
    "ModelHistogramMonitor": "lightning_explain.callbacks",
    "OverfitMonitor": "lightning_explain.callbacks",
    "SanityCheckCallback": "lightning_explain.callbacks",
    "TokenExplainCallback": "lightning_explain.callbacks",
    "attribution": "lightning_explain.attribution",
}

__all__ = [
    "ActivationMaximizationCallback",
    "ExplainCallback",
    "FeatureExplainCallback",
    "GradientNormMonitor",
    "ModelHistogramMonitor",
    "OverfitMonitor",
    "SanityCheckCallback",
    "TokenExplainCallback",
    "attribution",
    "__version__",
]

if TYPE_CHECKING:
    from lightning_explain import attribution
    from lightning_explain.callbacks import (
        ActivationMaximizationCallback,
        ExplainCallback,
        FeatureExplainCallback,
        GradientNormMonitor,
        ModelHistogramMonitor,
        OverfitMonitor,
        SanityCheckCallback,
        TokenExplainCallback,
    )


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lightning_explain' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__.endswith(name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
