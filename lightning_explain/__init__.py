"""lightning-explain: PyTorch Lightning callbacks that show what a model looks at while it trains."""

from lightning_explain import attribution

__version__ = "0.1.0"

__all__ = ["attribution", "__version__"]
