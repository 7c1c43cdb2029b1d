"""The one way any part of lightning-explain touches a user's model.

Every attribution method, analysis and callback goes through these pieces, so each of them
leaves the model exactly as it found it (module modes, parameters, buffers, ``.grad``, hooks,
the random streams):

- :func:`explanation_mode`, the model guard: eval mode with gradients enabled, autocast off,
  hooks removed and modes and random streams restored on exit, also after an exception;
- :func:`gradient_pass`: one forward and one backward pass to the input and/or a layer;
- :func:`select_output`: which tensor of the model's output is explained (``output=``: a dict's or
  ``ModelOutput``'s ``logits``, a tuple's first element, a key, an index or a callable);
- :func:`resolve_target` / :class:`Target` / :func:`select_targets` / :func:`target_scores`: what each sample is
  explained for (a class, a regression output, a segment, a callable score), resolved once per call;
- :func:`record_outputs` / :func:`forward_logits`: one forward pass that records chosen modules'
  outputs, or just the logits and targets;
- :func:`resolve_layer` / :func:`find_target_layer`: the layer a layer method explains;
- :class:`TokenBatch` / :func:`resolve_embedding` / :class:`Continuation` / :class:`TokenTarget`: how a text model is
  called on token ids (its attention mask and keyword arguments passed on), the embedding layer its tokens are
  explained at, and what a causal language model is explained for;
- :func:`detect_layout` / :class:`LayerLayout`: how that layer's output is laid out (feature map,
  channels-last, or tokens with prefix tokens and a patch grid);
- :func:`eager_view` / :func:`uncompiled` / :func:`get_layer` / :func:`plain_layer_name`: models compiled with
  ``torch.compile`` explained through their eager module, layer names with or without ``_orig_mod``;
- :data:`LossFn` / :func:`per_sample_losses` / :func:`mean_loss`: the loss convention, per-sample losses (N,);
- :func:`check_int` / :func:`check_number` / :func:`check_ints` / :func:`check_images`: the argument
  validators, one message style for every bad argument.

Example:
    >>> from lightning_explain.core import explanation_mode, gradient_pass  # doctest: +SKIP
    >>> result = gradient_pass(model, images, target=None, input_grad=True)  # doctest: +SKIP
"""

from lightning_explain.core.compiled import eager_view, get_layer, is_compiled, plain_layer_name, uncompiled
from lightning_explain.core.gradients import GradientPass, check_inputs, explanation_mode, gradient_pass, restore_modes
from lightning_explain.core.layers import LayerSpec, find_target_layer, resolve_layer
from lightning_explain.core.layout import LAYOUTS, LayerLayout, detect_layout
from lightning_explain.core.losses import LossFn, mean_loss, per_sample_cross_entropy, per_sample_losses
from lightning_explain.core.outputs import OutputSpec, check_output_spec, select_output
from lightning_explain.core.recording import call_order, check_logits, forward_logits, record_outputs
from lightning_explain.core.rng import preserved_global_rng, preserved_torch_rng
from lightning_explain.core.targets import (
    ClassPicker,
    Target,
    TargetSpec,
    TokenTarget,
    resolve_target,
    select_targets,
    target_scores,
)
from lightning_explain.core.tokens import Continuation, TokenBatch, find_embedding, resolve_embedding
from lightning_explain.core.validation import check_images, check_int, check_ints, check_number, is_int, is_number

__all__ = [
    "LAYOUTS",
    "ClassPicker",
    "Continuation",
    "GradientPass",
    "LayerLayout",
    "LayerSpec",
    "LossFn",
    "OutputSpec",
    "Target",
    "TargetSpec",
    "TokenBatch",
    "TokenTarget",
    "call_order",
    "check_images",
    "check_inputs",
    "check_int",
    "check_ints",
    "check_logits",
    "check_number",
    "check_output_spec",
    "detect_layout",
    "eager_view",
    "explanation_mode",
    "find_embedding",
    "find_target_layer",
    "forward_logits",
    "get_layer",
    "gradient_pass",
    "is_compiled",
    "is_int",
    "is_number",
    "mean_loss",
    "per_sample_cross_entropy",
    "per_sample_losses",
    "plain_layer_name",
    "preserved_global_rng",
    "preserved_torch_rng",
    "record_outputs",
    "resolve_embedding",
    "resolve_layer",
    "resolve_target",
    "restore_modes",
    "select_output",
    "select_targets",
    "target_scores",
    "uncompiled",
]
