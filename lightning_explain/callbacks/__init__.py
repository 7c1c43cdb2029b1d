"""Lightning callbacks: thin orchestration of the attribution functions, rendering and logging."""

from lightning_explain.callbacks.activation_max_callback import ActivationMaximizationCallback
from lightning_explain.callbacks.explain_callback import ExplainCallback
from lightning_explain.callbacks.feature_explain_callback import FeatureExplainCallback
from lightning_explain.callbacks.gradient_norm_monitor import GradientNormMonitor
from lightning_explain.callbacks.model_monitor import ModelHistogramMonitor
from lightning_explain.callbacks.overfit_monitor import OverfitMonitor
from lightning_explain.callbacks.sanity_check_callback import SanityCheckCallback
from lightning_explain.callbacks.token_explain_callback import TokenExplainCallback

__all__ = [
    "ActivationMaximizationCallback",
    "ExplainCallback",
    "FeatureExplainCallback",
    "GradientNormMonitor",
    "ModelHistogramMonitor",
    "OverfitMonitor",
    "SanityCheckCallback",
    "TokenExplainCallback",
]
