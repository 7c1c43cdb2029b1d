"""Lightning callbacks: thin orchestration of the attribution functions, rendering and logging."""

from lightning_explain.callbacks.explain_callback import ExplainCallback
from lightning_explain.callbacks.gradient_norm_monitor import GradientNormMonitor

__all__ = ["ExplainCallback", "GradientNormMonitor"]
