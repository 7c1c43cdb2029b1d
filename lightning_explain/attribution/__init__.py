"""Attribution methods as pure functions: no Lightning, no logging.

Every function computes in eval mode and leaves the model exactly as it found it
(training flags, BatchNorm statistics, parameters, ``.grad``, hooks, the global RNG) and
works under ``torch.no_grad()`` and ``torch.inference_mode()``. Maps are float32
``(N, H, W)`` at input resolution; input-space methods take ``reduce=None`` for the
per-channel attribution ``(N, C, H, W)``.

``sanity_check``, ``SanityCheckResult``, ``activation_maximization`` and ``total_variation`` moved to
:mod:`lightning_explain.analysis`; the names here still work (looked up on first use).
"""

import importlib
from typing import Any

from lightning_explain.attribution._reduce import REDUCTIONS
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
from lightning_explain.attribution.smoothgrad import smoothgrad
from lightning_explain.core.layers import find_target_layer, resolve_layer

__all__ = [
    "GRADIENT_METHODS",
    "INTEGRATION_RULES",
    "METHODS",
    "METHOD_OPTIONS",
    "REDUCTIONS",
    "Explanation",
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
    "smoothgrad",
    "token_grad_cam",
]

_MOVED_TO_ANALYSIS = ("SanityCheckResult", "activation_maximization", "sanity_check", "total_variation")


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`lightning_explain.analysis`, imported on first use (no import cycle)."""
    if name in _MOVED_TO_ANALYSIS:
        return getattr(importlib.import_module("lightning_explain.analysis"), name)
    raise AttributeError(f"module 'lightning_explain.attribution' has no attribute {name!r}")
