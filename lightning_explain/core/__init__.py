"""The one way any part of lightning-explain touches a user's model.

Every attribution method, analysis and callback goes through these pieces, so each of them
leaves the model exactly as it found it (module modes, parameters, buffers, ``.grad``, hooks,
the random streams):

- :func:`explanation_mode`, the model guard: eval mode with gradients enabled, autocast off,
  hooks removed and modes and random streams restored on exit, also after an exception;
- :func:`gradient_pass`: one forward and one backward pass to the input and/or a layer;
- :func:`select_targets` / :func:`target_scores`: which output each sample is explained for;
- :func:`resolve_layer` / :func:`find_target_layer`: the layer a layer method explains.
"""

from lightning_explain.core.gradients import GradientPass, check_inputs, explanation_mode, gradient_pass, restore_modes
from lightning_explain.core.layers import LayerSpec, find_target_layer, resolve_layer
from lightning_explain.core.rng import preserved_global_rng, preserved_torch_rng
from lightning_explain.core.targets import TargetSpec, select_targets, target_scores

__all__ = [
    "GradientPass",
    "LayerSpec",
    "TargetSpec",
    "check_inputs",
    "explanation_mode",
    "find_target_layer",
    "gradient_pass",
    "preserved_global_rng",
    "preserved_torch_rng",
    "resolve_layer",
    "restore_modes",
    "select_targets",
    "target_scores",
]
