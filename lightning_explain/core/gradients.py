"""The shared gradient pass behind every gradient-based method.

One forward pass of the model in eval mode, one ``torch.autograd.grad`` call to whatever
the requested methods need (the input, a layer's output, or both). The model is left
exactly as it was found: module training flags, buffers, parameters and ``.grad`` are not
touched, and every hook is removed, also when an exception escapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_explain.core.compiled import eager_view, uncompiled
from lightning_explain.core.outputs import OutputSpec, select_output
from lightning_explain.core.rng import preserved_torch_rng
from lightning_explain.core.targets import Target, TargetSpec, resolve_target

ForwardFn = Callable[[nn.Module, Tensor], object]
"""``(model, inputs) -> output``: how a pass calls the model on its inputs; ``None`` = ``model(inputs)``. Token
models are called through a :class:`~lightning_explain.core.tokens.TokenBatch`, which passes the attention mask and
the other keyword arguments their ``forward`` takes."""


def call_model(model: nn.Module, inputs: Tensor, forward: ForwardFn | None = None) -> object:
    """``forward(model, inputs)``, or ``model(inputs)`` when ``forward`` is ``None``."""
    return model(inputs) if forward is None else forward(model, inputs)


@contextlib.contextmanager
def explanation_mode(model: nn.Module, device: torch.device) -> Iterator[list]:
    """Put ``model`` in eval mode with gradients enabled; restore everything on exit.

    Yields a list that callers append hook handles to; they are removed on exit. Works
    inside ``torch.no_grad()`` and ``torch.inference_mode()``. Autocast is disabled so
    that maps are computed in the model's own precision, not a mixed one. torch's random streams
    are restored on exit (:func:`~lightning_explain.core.rng.preserved_torch_rng`), so a model that
    draws random numbers in eval mode leaves training's streams where they were (the callbacks
    also restore NumPy's and Python's around each event). Compiled models and submodules run eagerly
    for the duration (:func:`~lightning_explain.core.compiled.eager_view`), so hooks fire and gradients
    flow; the compiled training graph is not recompiled.

    Modes are switched through the model's own ``eval()`` and restored through its own
    ``train(mode)``, so overrides with side effects (EMA weights swapped in by ``eval()`` and
    out by ``train()``) run both ways; submodules whose flag then still differs from what it
    was (a frozen block kept in eval mode) get it back through their own ``train(mode)``.
    """
    training_flags = [(module, module.training) for module in model.modules()]
    handles: list = []
    switched = any(flag for _, flag in training_flags)  # a model already in eval mode needs no switch
    try:
        with preserved_torch_rng(), eager_view(model):
            if switched:
                model.eval()
            with torch.inference_mode(False), torch.enable_grad(), _autocast_disabled(device):
                yield handles
    finally:
        for handle in handles:
            handle.remove()
        if switched:
            restore_modes(model, training_flags)


def restore_modes(model: nn.Module, training_flags: list[tuple[nn.Module, bool]]) -> None:
    """Give every module its recorded ``training`` flag back, through the modules' own ``train(mode)``.

    The root first (its override runs as it would in training), then, in ``modules()`` order,
    each module whose flag differs; a ``train`` override that does not set the flag is
    followed by setting it directly.
    """
    root_flag = training_flags[0][1]
    if model.training != root_flag or any(m.training != f for m, f in training_flags):
        model.train(root_flag)
    for module, flag in training_flags:
        if module.training != flag:
            module.train(flag)
            if module.training != flag:
                object.__setattr__(module, "training", flag)


def _autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        return contextlib.nullcontext()


@dataclass
class GradientPass:
    """What one forward and one backward pass produced (all detached).

    Attributes:
        logits: the model's output, ``(N, K)`` or ``(N,)``.
        targets: the class explained for each sample, ``(N,)``, or ``None`` for a
            single-output model.
        input_grad: ``dS/dx`` with the input's shape, if requested.
        activation: the layer's output ``A``, if a layer was requested.
        activation_grad: ``dS/dA``, if a layer was requested.
        target: the resolved :class:`~lightning_explain.core.targets.Target` (what later passes explain too).
    """

    logits: Tensor
    targets: Tensor | None
    input_grad: Tensor | None = None
    activation: Tensor | None = None
    activation_grad: Tensor | None = None
    target: Target | None = None


def check_inputs(inputs: object, *, need_float: bool) -> Tensor:
    """Raise a clear error unless ``inputs`` is a batched tensor a method can explain."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor batch of shape (N, ...), got {type(inputs).__name__}.")
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must be a non-empty batch of shape (N, ...) with N >= 1, got shape {tuple(inputs.shape)}."
        )
    if need_float and not inputs.is_floating_point():
        raise ValueError(
            f"Input-gradient methods need floating-point inputs, got dtype {inputs.dtype}. "
            "For token ids, explain them at the embedding layer: token_attribution (TokenExplainCallback in training)."
        )
    return inputs


def gradient_pass(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    *,
    layer: nn.Module | None = None,
    layer_name: str = "",
    input_grad: bool = True,
    output: OutputSpec = None,
    forward: ForwardFn | None = None,
    layer_value: Tensor | None = None,
) -> GradientPass:
    """Run one forward and one backward pass and return the gradients the methods need.

    Args:
        model: the classifier; its output must be ``(N, K)`` logits or ``(N,)`` scores.
        inputs: the batch to explain; never modified, its ``requires_grad`` is kept.
        target: see :func:`lightning_explain.attribution.saliency`.
        layer: a submodule whose output ``A`` and ``dS/dA`` are wanted, or ``None``.
        layer_name: the layer's name, used in error messages.
        input_grad: whether ``dS/dx`` is wanted.
        output: which tensor of the model's output to explain (:func:`~lightning_explain.core.outputs.select_output`);
            a resolved :class:`~lightning_explain.core.targets.Target` brings its own.
        forward: how to call the model on ``inputs`` (:data:`~lightning_explain.core.gradients.ForwardFn`); ``None``
            = ``model(inputs)``.
        layer_value: a tensor that replaces the layer's output in this pass (``activation`` and
            ``activation_grad`` are then its own and the gradient with respect to it): integrated gradients at a
            layer, such as a text model's embedding, run the model on points between two of its outputs.
    """
    if layer is None and not input_grad:
        raise ValueError("gradient_pass needs input_grad=True or a layer; it was asked for nothing.")
    with explanation_mode(model, inputs.device) as handles:
        x = inputs.detach().clone()
        if input_grad:
            x.requires_grad_(True)
        captured: list[Tensor] = []
        if layer is not None:
            capture = _capture_output(captured, keep_upstream=input_grad, replace=layer_value)
            handles.append(layer.register_forward_hook(capture))
        if isinstance(target, Target):
            output = target.output
        logits = select_output(call_model(uncompiled(model), x, forward), output)
        if layer is not None:
            _check_captured(captured, layer_name)
        resolved = resolve_target(logits, target, output)
        scores = resolved.scores(logits).sum()
        wrt = ([x] if input_grad else []) + ([captured[0]] if layer is not None else [])
        if not scores.requires_grad:
            raise ValueError(
                "The model's output does not depend on anything that can be differentiated: "
                "check that forward does not detach its output or run under torch.no_grad()."
            )
        grads = list(torch.autograd.grad(scores, wrt, allow_unused=True))
    result = GradientPass(logits=logits.detach(), targets=resolved.index, target=resolved)
    if input_grad:
        result.input_grad = _require_grad(grads.pop(0), "the input")
    if layer is not None:
        result.activation = captured[0].detach()
        result.activation_grad = _require_grad(grads.pop(0), f"layer {layer_name!r}")
    return result


def _capture_output(captured: list[Tensor], *, keep_upstream: bool, replace: Tensor | None = None):
    """A forward hook that records the layer's output and hands a clone downstream.

    The clone keeps an in-place op that follows the layer (``ReLU(inplace=True)``) from
    overwriting the recorded values. Without input gradients the recorded tensor is a
    fresh leaf, so the backward pass stops at the layer instead of running to the input.
    With ``replace``, a leaf copy of that tensor (of the output's shape) stands in for the output.
    """

    def hook(module: nn.Module, args: tuple, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"Grad-CAM needs a layer whose output is a tensor; {type(module).__name__} returned "
                f"{type(output).__name__}. Choose another layer with layer=..."
            )
        if replace is not None:
            if tuple(replace.shape) != tuple(output.shape):
                raise ValueError(
                    f"The value that replaces the output of {type(module).__name__} has shape {tuple(replace.shape)}, "
                    f"but the layer returned {tuple(output.shape)}."
                )
            recorded = replace.detach().to(output.dtype).requires_grad_(True)
        else:
            recorded = output if keep_upstream else output.detach().requires_grad_(True)
        captured.append(recorded)
        return recorded.clone()

    return hook


def _check_captured(captured: list[Tensor], layer_name: str) -> None:
    if not captured:
        raise ValueError(
            f"Layer {layer_name!r} was not called during the forward pass, so it cannot be explained. "
            "Choose a layer that the model's forward uses."
        )
    if len(captured) > 1:
        raise ValueError(
            f"Layer {layer_name!r} was called {len(captured)} times in one forward pass; Grad-CAM needs a "
            "layer that runs once. Choose a module that is not shared."
        )


def _require_grad(grad: Tensor | None, what: str) -> Tensor:
    if grad is None:
        raise ValueError(f"The model's output does not depend on {what}, so it has no gradient to explain.")
    return grad.detach()
