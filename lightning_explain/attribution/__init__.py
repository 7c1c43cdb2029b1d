"""Attribution methods as pure functions: no Lightning, no logging.

Every function computes in eval mode and leaves the model exactly as it found it
(training flags, BatchNorm statistics, parameters, ``.grad``, hooks) and works under
``torch.no_grad()`` and ``torch.inference_mode()``.
"""

from lightning_explain.attribution._layers import find_target_layer, resolve_layer
from lightning_explain.attribution.explain import GRADIENT_METHODS, Explanation, compute_explanation, explain
from lightning_explain.attribution.grad_cam import grad_cam
from lightning_explain.attribution.saliency import saliency

__all__ = [
    "GRADIENT_METHODS",
    "Explanation",
    "compute_explanation",
    "explain",
    "find_target_layer",
    "grad_cam",
    "resolve_layer",
    "saliency",
]
