"""Models wrapped by ``torch.compile``: explained through the eager module that shares their parameters.

``torch.compile(module)`` returns an ``OptimizedModule`` that holds the original module as ``_orig_mod``;
``module.compile()`` compiles a module in place. Forward hooks on the submodules of a compiled module do not
fire inside the compiled graph, so every pass of the package runs the model eagerly instead:
:func:`eager_view` (entered by :func:`~lightning_explain.core.gradients.explanation_mode`) makes every
``torch.compile`` directive run its original Python code for its duration. The training graph is neither
changed nor recompiled, and the maps are those of the eager model, computed with the same parameters.

Layer names may be written with or without the ``_orig_mod`` segments that ``named_modules()`` shows for
a compiled module (``"net.3"`` or ``"net._orig_mod.3"``); the names the package reports are the plain form
(:func:`plain_layer_name`).

Example:
    >>> model = torch.compile(net)  # doctest: +SKIP
    >>> get_layer(model, "3") is net[3]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch
from torch import nn

ORIG_MOD = "_orig_mod"
"""The attribute (and ``named_modules()`` segment) under which ``torch.compile`` keeps the original module."""


def _optimized_module_type() -> type | None:
    """``OptimizedModule`` if torch's compiler is loaded; otherwise no compiled module can exist (no import here)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(eval_frame, "OptimizedModule", None)


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` is wrapped by ``torch.compile`` or compiled in place with ``nn.Module.compile()``."""
    optimized = _optimized_module_type()
    if optimized is not None and isinstance(module, optimized):
        return True
    return getattr(module, "_compiled_call_impl", None) is not None


def uncompiled(model: nn.Module) -> nn.Module:
    """The eager module behind ``model``: its ``_orig_mod`` (through any number of ``torch.compile`` wrappers),
    else ``model`` itself. It shares the parameters and buffers of ``model``."""
    optimized = _optimized_module_type()
    while optimized is not None and isinstance(model, optimized):
        model = model._modules[ORIG_MOD]
    return model


def plain_layer_name(name: str) -> str:
    """``name`` without its ``_orig_mod`` segments: ``"net._orig_mod.3"`` -> ``"net.3"``, ``"_orig_mod"`` -> ``""``."""
    if ORIG_MOD not in name:
        return name
    return ".".join(part for part in name.split(".") if part != ORIG_MOD)


def named_eager_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``model.named_modules()`` with plain names and without the ``torch.compile`` wrappers.

    Each wrapper is left out; the eager module it holds comes next under the same plain name. The root is
    named ``""`` (the uncompiled root when ``model`` itself is compiled).
    """
    optimized = _optimized_module_type()
    for name, module in model.named_modules():
        if optimized is not None and isinstance(module, optimized):
            continue
        yield plain_layer_name(name), module


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The eager submodule of ``model`` called ``name``, written with or without ``_orig_mod`` segments.

    Raises:
        AttributeError: no such module (as ``model.get_submodule`` raises).
    """
    try:
        return uncompiled(model.get_submodule(name))
    except AttributeError:
        plain = plain_layer_name(name)
        for candidate, module in named_eager_modules(model):
            if candidate == plain:
                return module
        raise


@contextlib.contextmanager
def eager_view(model: nn.Module) -> Iterator[nn.Module]:
    """For the duration, every ``torch.compile`` directive runs eagerly; yields the uncompiled ``model``.

    With torch 2.6 or newer this is ``torch.compiler.set_stance("force_eager")``: compiled modules, modules
    compiled in place, compiled functions and a LightningModule given to ``Trainer.fit`` compiled all run
    their Python code, so hooks fire and gradients flow; nothing of the model is changed, and the compiled
    code cached for training is kept, not recompiled. Older torch has no stance: then each
    ``torch.compile`` wrapper below the root is replaced by its ``_orig_mod`` in its parent, and each module
    compiled in place gets its eager call back, everything restored on exit (also after an exception);
    callers run the yielded module instead of a compiled root.

    Entered by :func:`~lightning_explain.core.gradients.explanation_mode`, so every pass of the package runs
    eagerly. A model without compiled parts (or a process that never compiled anything) is left as is.
    """
    root = uncompiled(model)
    if _optimized_module_type() is None:  # torch's compiler never loaded: nothing is compiled
        yield root
        return
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:
        with _swapped_wrappers(root):
            yield root
        return
    try:
        stance = set_stance("force_eager")
    except RuntimeError:  # called while torch.compile traces: already eager Python, no stance to set
        stance = contextlib.nullcontext()
    with stance:
        yield root


@contextlib.contextmanager
def _swapped_wrappers(root: nn.Module) -> Iterator[None]:
    """The module tree under ``root`` without compiled parts (torch without ``set_stance``), restored on exit."""
    optimized = _optimized_module_type()
    swapped: list[tuple[dict, str, nn.Module]] = []  # (parent._modules, key, the wrapper)
    in_place: list[tuple[nn.Module, object]] = []  # (module, its compiled call)
    try:
        pending = [root]
        seen: set[int] = set()
        while pending:
            module = pending.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            compiled_call = getattr(module, "_compiled_call_impl", None)
            if compiled_call is not None:
                in_place.append((module, compiled_call))
                module._compiled_call_impl = None
            for key, child in list(module._modules.items()):
                if optimized is not None and isinstance(child, optimized):
                    swapped.append((module._modules, key, child))
                    child = uncompiled(child)
                    module._modules[key] = child
                if child is not None:
                    pending.append(child)
        yield
    finally:
        for modules, key, wrapper in reversed(swapped):
            modules[key] = wrapper
        for module, compiled_call in reversed(in_place):
            module._compiled_call_impl = compiled_call
