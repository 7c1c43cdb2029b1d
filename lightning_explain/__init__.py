"""lightning-explain: PyTorch Lightning callbacks that show what a model looks at while it trains.

Example::

    from lightning.pytorch import Trainer
    from lightning_explain import ExplainCallback, GradientNormMonitor

    trainer = Trainer(callbacks=[ExplainCallback(), GradientNormMonitor()])
"""

from lightning_explain import attribution
from lightning_explain.callbacks import ExplainCallback, GradientNormMonitor

__version__ = "0.1.0"

__all__ = ["ExplainCallback", "GradientNormMonitor", "attribution", "__version__"]
