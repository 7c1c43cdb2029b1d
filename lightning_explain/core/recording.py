"""Output recording: hook some modules, run one forward pass under the model guard, collect what they returned.

The one way the package reads a model's intermediate outputs outside the gradient pass: the layer search,
feature maps, the sanity check's layer order and the activation histograms all go through
:func:`record_outputs`; :func:`forward_logits` is the plain forward pass that fixes targets before a
multi-pass method runs. The model is left exactly as found (:func:`~lightning_explain.core.gradients.explanation_mode`)
and every hook is removed, also when an exception escapes.

Example:
    >>> logits, outputs = record_outputs(model, images, {"features": model.features})  # doctest: +SKIP
    >>> outputs["features"][0].shape  # doctest: +SKIP
    torch.Size([8, 64, 7, 7])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from lightning_explain.core.compiled import uncompiled
from lightning_explain.core.gradients import ForwardFn, call_model, explanation_mode
from lightning_explain.core.outputs import OutputSpec, select_output
from lightning_explain.core.targets import TargetSpec, select_targets

Recorder = Callable[[str, object], object]
"""``(module name, what it returned) -> the object to keep``, or ``None`` to keep nothing for that call."""


def keep_tensor_copy(name: str, output: object) -> Tensor | None:
    """The default :data:`Recorder`: a detached copy of a tensor output (an in-place op that follows cannot change
    it), nothing for other outputs."""
    return output.detach().clone() if isinstance(output, Tensor) else None


def record_outputs(
    model: nn.Module,
    inputs: Tensor,
    modules: Mapping[str, nn.Module],
    *,
    recorder: Recorder = keep_tensor_copy,
    before: bool = False,
    forward: ForwardFn | None = None,
) -> tuple[object, dict[str, list]]:
    """One forward pass of ``model`` in eval mode under ``no_grad``, recording what each module returned.

    Args:
        model: the model; left exactly as found.
        inputs: the batch, passed as a detached copy.
        modules: ``{name: module}`` to hook.
        recorder: turns one call's output into what is kept (``None`` keeps nothing); it may raise to
            refuse an output (the error escapes, the hooks are removed).
        before: hook the call instead of its result (a forward pre-hook): the recorder gets the
            positional arguments; used to learn the order modules are called in.
        forward: how to call the model on ``inputs`` (:data:`~lightning_explain.core.gradients.ForwardFn`, e.g. a
            :class:`~lightning_explain.core.tokens.TokenBatch`); ``None`` = ``model(inputs)``.

    Returns:
        ``(the model's output, {name: [what the recorder kept, one item per call, in call order]})``.
    """
    recorded: dict[str, list] = {name: [] for name in modules}

    def hook_for(name: str):
        def keep(value: object) -> None:
            kept = recorder(name, value)
            if kept is not None:
                recorded[name].append(kept)

        if before:
            return lambda module, args: keep(args)
        return lambda module, args, output: keep(output)

    with explanation_mode(model, inputs.device) as handles, torch.no_grad():
        for name, module in modules.items():
            hook = hook_for(name)
            handles.append(module.register_forward_pre_hook(hook) if before else module.register_forward_hook(hook))
        output = call_model(uncompiled(model), inputs.detach().clone(), forward)
    return output, recorded


def call_order(model: nn.Module, inputs: Tensor, modules: Mapping[str, nn.Module]) -> list[str]:
    """The names in ``modules`` in the order one forward pass first calls them (modules not called are left out)."""
    order: list[str] = []

    def note(name: str, args: object) -> bool:
        if name not in order:
            order.append(name)
        return True

    record_outputs(model, inputs, modules, recorder=note, before=True)
    return order


def capture_layer_outputs(
    model: nn.Module, inputs: Tensor, layers: dict[str, nn.Module], output: OutputSpec = None
) -> tuple[Tensor, dict]:
    """One forward pass in eval mode under ``no_grad``: ``(logits, {name: the layer's output})``, each layer run once.

    Each output is copied when recorded, so an in-place op that follows cannot change it.

    Raises:
        ValueError: a layer that is not called, called more than once, or returns no tensor.
    """

    def copy_tensor(name: str, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"Feature maps need a layer whose output is a tensor; {name!r} returned {type(output).__name__}."
            )
        return output.detach().clone()

    logits, captured = record_outputs(model, inputs, layers, recorder=copy_tensor)
    logits = check_logits(logits, output).detach()
    for name, outputs in captured.items():
        if len(outputs) != 1:
            raise ValueError(
                f"Layer {name!r} was called {len(outputs)} times in one forward pass; feature maps need a layer "
                "that runs exactly once. Choose another layer."
            )
    return logits, {name: outputs[0] for name, outputs in captured.items()}


def check_logits(logits: object, output: OutputSpec = None) -> Tensor:
    """The explained tensor of what the model returned (:func:`~lightning_explain.core.outputs.select_output`).

    Raises:
        TypeError: no tensor found; the message says which ``output=`` to pass.
    """
    return select_output(logits, output)


def forward_logits(
    model: nn.Module, inputs: Tensor, target: TargetSpec, output: OutputSpec = None
) -> tuple[Tensor, Tensor | None]:
    """One forward pass in eval mode without gradients: ``(logits, targets)``, the explained tensor of the output
    (``output=``, :func:`~lightning_explain.core.outputs.select_output`) and the targets as in
    :func:`~lightning_explain.core.targets.select_targets`."""
    logits, _ = record_outputs(model, inputs, {})
    logits = check_logits(logits, output).detach()
    return logits, select_targets(logits, target)
