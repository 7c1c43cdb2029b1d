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

from lightning_explain.attribution import methods  # noqa: F401 (importing it registers every method)
from lightning_explain.attribution._reduce import REDUCTIONS
from lightning_explain.attribution.engine import (
    GRADIENT_METHODS,
    Explanation,
    check_methods,
    check_options,
    compute_explanation,
    explain,
)
from lightning_explain.attribution.faithfulness import deletion_insertion, energy_in_mask, pointing_game
from lightning_explain.attribution.feature_attribution import feature_saliency, token_grad_cam
from lightning_explain.attribution.methods.attention_rollout import attention_rollout
from lightning_explain.attribution.methods.feature_maps import feature_maps
from lightning_explain.attribution.methods.grad_cam import grad_cam
from lightning_explain.attribution.methods.grad_cam_pp import grad_cam_pp
from lightning_explain.attribution.methods.gradient_x_input import gradient_x_input
from lightning_explain.attribution.methods.guided_backprop import guided_backprop
from lightning_explain.attribution.methods.guided_grad_cam import guided_grad_cam
from lightning_explain.attribution.methods.integrated_gradients import INTEGRATION_RULES, integrated_gradients
from lightning_explain.attribution.methods.occlusion import occlusion
from lightning_explain.attribution.methods.saliency import saliency
from lightning_explain.attribution.methods.smoothgrad import smoothgrad
from lightning_explain.attribution.registry import (
    INPUT_KINDS,
    MethodContext,
    MethodSpec,
    get_spec,
    method_names,
    register,
    registered,
)
from lightning_explain.attribution.token_faithfulness import token_deletion_insertion
from lightning_explain.attribution.tokens import (
    TOKEN_GRADIENT_METHODS,
    compute_token_explanation,
    token_attribution,
    token_methods,
)
from lightning_explain.core.layers import find_target_layer, resolve_layer
from lightning_explain.core.tokens import Continuation, TokenBatch, find_embedding

METHODS = method_names()
"""Every method name :func:`explain` and ``ExplainCallback(methods=...)`` accept: the registry's, heatmap methods
first, ``feature_maps`` last."""

METHOD_OPTIONS: dict[str, tuple[str, ...]] = {spec.name: tuple(spec.defaults) for spec in registered()}
"""The keyword options each method takes in ``options=`` (see the method's own function and
:attr:`MethodSpec.defaults <lightning_explain.attribution.registry.MethodSpec>`).

The layer methods (Grad-CAM, Grad-CAM++, guided Grad-CAM) also take ``layout``, ``drop_tokens`` and ``grid``:
how the layer's output is read, detected when left ``None`` (a feature map, a channels-last map, or a
transformer's tokens with the prefix tokens dropped and the patch grid restored; see
:mod:`lightning_explain.core.layout`)."""

__all__ = [
    "GRADIENT_METHODS",
    "INPUT_KINDS",
    "TOKEN_GRADIENT_METHODS",
    "Continuation",
    "TokenBatch",
    "INTEGRATION_RULES",
    "METHODS",
    "METHOD_OPTIONS",
    "REDUCTIONS",
    "Explanation",
    "MethodContext",
    "MethodSpec",
    "attention_rollout",
    "check_methods",
    "check_options",
    "compute_explanation",
    "compute_token_explanation",
    "deletion_insertion",
    "energy_in_mask",
    "explain",
    "feature_maps",
    "feature_saliency",
    "find_embedding",
    "find_target_layer",
    "get_spec",
    "gradient_x_input",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "method_names",
    "occlusion",
    "pointing_game",
    "register",
    "registered",
    "resolve_layer",
    "saliency",
    "smoothgrad",
    "token_attribution",
    "token_deletion_insertion",
    "token_grad_cam",
    "token_methods",
]

_MOVED_TO_ANALYSIS = ("SanityCheckResult", "activation_maximization", "sanity_check", "total_variation")


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`lightning_explain.analysis`, imported on first use (no import cycle)."""
    if name in _MOVED_TO_ANALYSIS:
        return getattr(importlib.import_module("lightning_explain.analysis"), name)
    raise AttributeError(f"module 'lightning_explain.attribution' has no attribute {name!r}")
