"""Every registered attribution method, called through its own public function.

The contract tests (targets, model state, reductions, ``explain`` equals each method alone) iterate over
:func:`lightning_explain.attribution.registered`, so a method added to the registry runs through all of them
without anyone editing a table here. Only the options that keep a multi-pass method fast in tests are listed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import Tensor, nn

from lightning_explain.attribution import get_spec, registered

FAST_OPTIONS = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3, "noise": 0.1},
    "occlusion": {"window": 4},
}
"""Options that make the multi-pass methods cheap on the small test models (any other method: none)."""

HEATMAP_METHODS = tuple(spec.name for spec in registered() if spec.output == "map")
"""The registered methods that return a heatmap (N, H, W)."""

REDUCIBLE_METHODS = tuple(spec.name for spec in registered() if "reduce" in spec.defaults)
"""The registered input-space methods with a channel reduction (``reduce=``)."""

ATTENTION_METHODS = tuple(spec.name for spec in registered() if spec.needs_attention)
"""The registered methods that read a transformer's attention: the contract tests run them on the small Hugging
Face ViT of ``vit_models`` (fixture ``attention_vit``), since the toy CNNs have none."""

CNN_METHODS = tuple(spec.name for spec in registered() if not spec.needs_attention)
"""Every other registered method, in the registry's order: what the contract tests run on the toy CNNs."""

CNN_HEATMAP_METHODS = tuple(name for name in HEATMAP_METHODS if name in CNN_METHODS)
"""The heatmap methods among :data:`CNN_METHODS`."""


def model_fixture(name: str, cnn: str) -> str:
    """The fixture a contract test runs method ``name`` on: ``cnn`` (a toy CNN's, returning ``(model, inputs)``),
    or ``"attention_vit"`` (the same contract: 5 classes, inputs (4, 3, 16, 16)) for a method that reads attention."""
    return "attention_vit" if name in ATTENTION_METHODS else cnn


def public_function(name: str) -> Callable[..., Tensor]:
    """The method's public function: the function named like the method in its module of ``methods/``."""
    module = importlib.import_module(f"lightning_explain.attribution.methods.{name}")
    return getattr(module, name)


def call_method(
    name: str, model: nn.Module, inputs: Tensor, target=None, *, layer=None, fast: bool = True, **options
) -> Tensor:
    """Call method ``name``'s public function, passing ``layer`` only to the methods that take one."""
    kwargs = {**(FAST_OPTIONS.get(name, {}) if fast else {}), **options}
    if get_spec(name).needs_layer:
        kwargs["layer"] = layer
    if name == "feature_maps":
        return public_function(name)(model, inputs, **kwargs)
    return public_function(name)(model, inputs, target, **kwargs)


def caller(name: str, **fixed) -> Callable[..., Tensor]:
    """``(model, inputs, target=None, **options) -> map`` for method ``name``, with ``fixed`` options (and layer)."""

    def call(model: nn.Module, inputs: Tensor, target=None, **options) -> Tensor:
        return call_method(name, model, inputs, target, **{**fixed, **options})

    return call
