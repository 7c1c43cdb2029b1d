"""Attribution methods as pure functions: no Lightning, no logging.

Every function computes in eval mode and leaves the model exactly as it found it
(training flags, BatchNorm statistics, parameters, ``.grad``, hooks, the global RNG) and
works under ``torch.no_grad()`` and ``torch.inference_mode()``. Maps are float32
``(N, H, W)`` at input resolution; input-space methods take ``reduce=None`` for the
per-channel attribution ``(N, C, H, W)``.
"""

from lightning_explain.attribution._layers import find_target_layer, resolve_layer
from lightning_explain.attribution._reduce import REDUCTIONS
from lightning_explain.attribution.activation_maximization import activation_maximization, total_variation
from lightning_explain.attribution.explain import (
    GRADIENT_METHODS,
    METHOD_OPTIONS,
    METHODS,
    Explanation,
    compute_explanation,
    explain,
)
from lightning_explain.attribution.feature_attribution import feature_saliency, token_grad_cam
from lightning_explain.attribution.feature_maps import feature_maps
from lightning_explain.attribution.grad_cam import grad_cam
from lightning_explain.attribution.grad_cam_pp import grad_cam_pp
from lightning_explain.attribution.guided_backprop import guided_backprop
from lightning_explain.attribution.guided_grad_cam import guided_grad_cam
from lightning_explain.attribution.integrated_gradients import INTEGRATION_RULES, integrated_gradients
from lightning_explain.attribution.occlusion import occlusion
from lightning_explain.attribution.saliency import saliency
from lightning_explain.attribution.sanity_check import SanityCheckResult, sanity_check
from lightning_explain.attribution.smoothgrad import smoothgrad

__all__ = [
    "GRADIENT_METHODS",
    "INTEGRATION_RULES",
    "METHODS",
    "METHOD_OPTIONS",
    "REDUCTIONS",
    "Explanation",
    "SanityCheckResult",
    "activation_maximization",
    "compute_explanation",
    "explain",
    "feature_maps",
    "feature_saliency",
    "find_target_layer",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "occlusion",
    "resolve_layer",
    "saliency",
    "sanity_check",
    "smoothgrad",
    "token_grad_cam",
    "total_variation",
]
