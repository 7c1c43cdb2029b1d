"""Model-parameter randomisation test (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

An explanation that describes the model must change when the model's learned weights are
destroyed. :func:`sanity_check` randomises a deep copy of the model layer by layer, from the
output layer down to the input (the "cascading" test), and measures after each layer how
similar each method's maps still are to the trained model's maps: the mean over samples of
the Spearman rank correlation of the absolute-valued maps, as in the paper.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lightning_explain.analysis.map_statistics import spearman
from lightning_explain.attribution.engine import check_methods, compute_explanation
from lightning_explain.core.compiled import get_layer, named_eager_modules, plain_layer_name
from lightning_explain.core.gradients import check_inputs, explanation_mode
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec, check_output_spec, select_output
from lightning_explain.core.recording import call_order
from lightning_explain.core.targets import Target, TargetSpec, resolve_target

MapFunction = Callable[[nn.Module, Tensor, Tensor | None], Tensor]
"""A method as a callable ``(model, inputs, targets) -> maps (N, ...)``."""

DEFAULT_THRESHOLD = 0.5
"""A method fails when its maps still correlate above this after every layer is randomised."""

UNDEFINED_REASON = (
    "the rank correlation is undefined because the maps are constant (all zero: dead ReLUs, an output that "
    "does not depend on the input), so the test measured nothing; check the model and the layer"
)
"""Why a method's result is undefined, in the summary and the warnings."""


@dataclass
class SanityCheckResult:
    """What :func:`sanity_check` measured.

    Attributes:
        correlations: method -> ``[(layer_name, rho), ...]`` in cascade order: ``rho`` is the mean
            Spearman correlation between the trained model's maps and the maps of the model whose
            layers up to and including ``layer_name`` (counted from the output) are randomised.
            ``nan`` where every map of a pair is constant (the correlation is undefined).
        passed: method -> ``True`` when the maps depend on the weights: the correlation after
            randomising every layer is defined and at most ``threshold``. ``False`` when it is
            above (the maps do not depend on the weights) or undefined.
        threshold: the rule's threshold.
        layers: the randomised layers, output first.
        undefined: method -> ``True`` when the final correlation is ``nan``: the maps are constant
            (all zero: dead ReLUs, a detached output), so the test measured nothing.
    """

    correlations: dict[str, list[tuple[str, float]]]
    passed: dict[str, bool]
    threshold: float
    layers: list[str] = field(default_factory=list)
    undefined: dict[str, bool] = field(default_factory=dict)

    def final(self, method: str) -> float:
        """The correlation after randomising every layer (``nan`` when undefined)."""
        series = self.correlations[method]
        return series[-1][1] if series else float("nan")

    @property
    def summary(self) -> str:
        """A few lines for a human: per method, the correlation curve and the verdict."""
        lines = [f"Sanity check (cascading randomisation of {len(self.layers)} layers, output first):"]
        for method, series in self.correlations.items():
            curve = ", ".join(f"{name} {rho:.2f}" for name, rho in series)
            if self.undefined.get(method):
                verdict = f"UNDEFINED: {UNDEFINED_REASON}"
            elif self.passed[method]:
                verdict = "passed"
            else:
                verdict = f"FAILED: maps do not depend on the weights (> {self.threshold})"
            lines.append(f"  {method}: {verdict}; rank correlation after randomising: {curve}")
        return "\n".join(lines)


def randomisable_layers(model: nn.Module, inputs: Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order the forward pass calls them.

    Found with one forward pass of one sample in eval mode without gradients; modules the
    forward pass does not call are left out. ``""`` stands for the root module when it owns
    parameters itself.
    """
    owners = {n: m for n, m in named_eager_modules(model) if any(True for _ in m.parameters(recurse=False))}
    return call_order(model, inputs[:1], owners)


def randomise_layer(module: nn.Module, generator: torch.Generator) -> None:
    """Replace, in place, each parameter the module owns directly by Gaussian noise.

    The noise has the trained tensor's own mean and standard deviation, so activations keep
    their scale while the learned structure is destroyed. A tensor without spread (one value,
    or all values equal such as a fresh BatchNorm scale) gets a standard deviation of
    ``|mean|``, or 1 when its mean is 0. Draws only from ``generator``.
    """
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            values = parameter.detach().float()
            mean = float(values.mean())
            std = float(values.std()) if values.numel() > 1 else 0.0
            if not std > 0:
                std = abs(mean) or 1.0
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            parameter.copy_((noise * std + mean).to(device=parameter.device, dtype=parameter.dtype))


def sanity_check(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    *,
    methods: Sequence[str | MapFunction] = ("saliency", "grad_cam"),
    layer: LayerSpec = None,
    layers: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    warn: bool = True,
    output: OutputSpec = None,
) -> SanityCheckResult:
    """Cascading parameter randomisation: do the maps depend on the learned weights?

    A deep copy of ``model`` is randomised one layer at a time, from the output layer towards
    the input, each step keeping the layers randomised before it. After each step every method
    explains ``inputs`` for the same classes as on the trained model (the trained model's
    prediction when ``target`` is None), and the mean Spearman rank correlation with the trained
    model's maps is recorded. Maps are compared by absolute value, as in Adebayo et al. (2018):
    the sign of an attribution is not part of the comparison.

    Rule: a method *fails* (its maps do not depend on the weights) when the correlation after
    randomising every layer is still above ``threshold`` (0.5 by default); a ``UserWarning``
    naming the method is issued when ``warn`` is true. A faithful method's correlation falls
    towards 0 as more layers are randomised.

    The user's model is left exactly as found (it is only run in eval mode to find the targets
    and the trained maps); the global random generators are not used: the noise comes from a
    local ``torch.Generator`` seeded with ``seed``.

    Args:
        model: a classifier returning logits (N, K) or scores (N,), or an output they are picked out of with
            ``output``.
        inputs: the batch to explain.
        target: ``None`` = the trained model's predicted class (the output itself for one score per sample),
            an ``int``, a LongTensor (N,), a :class:`~lightning_explain.core.targets.ClassPicker` (picked on the
            trained model) or a callable ``(output) -> (N,) scores``; resolved once, on the trained model.
        methods: names accepted by :func:`~lightning_explain.attribution.compute_explanation`
            (``"saliency"``, ``"grad_cam"``, ...), or callables ``(model, inputs, targets) -> maps``.
        layer: the layer for methods that need one (Grad-CAM); resolved on the trained model
            and used by name in the randomised copies.
        layers: the layers to randomise (names from ``model.named_modules()``), in cascade order;
            ``None`` = every module that owns parameters, in reverse order of execution.
        threshold: the rule's threshold, in (-1, 1).
        seed: seeds the noise.
        warn: whether to ``warnings.warn`` for each failing method.
        output: which tensor of the model's output is explained
            (:func:`~lightning_explain.core.outputs.select_output`: by default a tensor as is, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, an index or a callable). It picks
            the logits the targets are fixed on and is passed to the named methods; callables in ``methods``
            keep their signature ``(model, inputs, targets)`` and read the model's output themselves.

    Returns:
        A :class:`SanityCheckResult`; ``print(result.summary)`` for a readable report.

    Example:
        >>> result = sanity_check(model, images, methods=("saliency", "grad_cam"))  # doctest: +SKIP
        >>> result.passed
        {'saliency': True, 'grad_cam': True}
    """
    check_inputs(inputs, need_float=False)
    output = check_output_spec(output)
    if not -1 < threshold < 1:
        raise ValueError(f"threshold must be in (-1, 1), got {threshold!r}.")
    named, functions = _split_methods(methods)
    targets = _resolve_targets(model, inputs, target, output)
    cascade = _cascade(model, inputs, layers)

    trained, layer_name = _maps(model, inputs, targets, named, functions, layer, output)
    generator = torch.Generator().manual_seed(seed)
    correlations: dict[str, list[tuple[str, float]]] = {m: [] for m in trained}
    with torch.inference_mode(False):  # the copy's parameters must be ordinary tensors, even from a validation step
        copy_model = copy.deepcopy(model)
        for name in cascade:
            randomise_layer(get_layer(copy_model, name), generator)
            randomised, _ = _maps(copy_model, inputs, targets, named, functions, layer_name, output)
            for method, maps in trained.items():
                rho = spearman(maps.abs(), randomised[method].abs()).nanmean()
                correlations[method].append((name or "<root>", float(rho)))
        del copy_model
    undefined = {m: not series or series[-1][1] != series[-1][1] for m, series in correlations.items()}
    passed = {m: not undefined[m] and series[-1][1] <= threshold for m, series in correlations.items()}
    result = SanityCheckResult(correlations, passed, threshold, [n or "<root>" for n in cascade], undefined)
    if warn:
        for method, ok in passed.items():
            if undefined[method]:
                warnings.warn(f"sanity check of {method!r}: {UNDEFINED_REASON}.", UserWarning, stacklevel=2)
            elif not ok:
                warnings.warn(
                    f"sanity check: the maps of {method!r} do not depend on the model's weights: their rank "
                    f"correlation with the trained model's maps is still {result.final(method):.2f} (> {threshold}) "
                    "after randomising every layer (Adebayo et al. 2018). They may show the input, not the model.",
                    UserWarning,
                    stacklevel=2,
                )
    return result


def _split_methods(methods: Sequence[str | MapFunction]) -> tuple[tuple[str, ...], dict[str, MapFunction]]:
    if isinstance(methods, str) or callable(methods):
        methods = (methods,)
    names = [m for m in methods if isinstance(m, str)]
    functions: dict[str, MapFunction] = {}
    for m in methods:
        if isinstance(m, str):
            continue
        if not callable(m):
            raise ValueError(
                f"methods must hold method names or callables (model, inputs, targets) -> maps, got {m!r}."
            )
        name = getattr(m, "__name__", type(m).__name__)
        if name in functions or name in names:  # two lambdas, or a callable named like a method
            name = f"{name}_{len(functions)}"
        functions[name] = m
    if not names and not functions:
        raise ValueError("methods must name at least one method.")
    return (check_methods(names) if names else ()), functions


def _resolve_targets(model: nn.Module, inputs: Tensor, target: TargetSpec, output: OutputSpec = None) -> Target:
    """Fix what is explained once, on the trained model, so every randomised model explains the same thing."""
    with explanation_mode(model, inputs.device), torch.no_grad():
        logits = select_output(model(inputs.detach().clone()), output)
    return resolve_target(logits, target, output)


def _cascade(model: nn.Module, inputs: Tensor, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        order = list(reversed(randomisable_layers(model, inputs)))
        if not order:
            raise ValueError(
                f"{type(model).__name__} has no parameters that its forward pass uses: nothing to randomise."
            )
        return order
    modules = dict(named_eager_modules(model))
    unknown = [n for n in layers if plain_layer_name(n) not in modules]
    if unknown or isinstance(layers, str) or not layers:
        raise ValueError(f"layers must be a non-empty list of names from model.named_modules(); unknown: {unknown}.")
    return [plain_layer_name(n) for n in layers]


def _maps(
    model: nn.Module,
    inputs: Tensor,
    targets: Target,
    named: tuple[str, ...],
    functions: dict[str, MapFunction],
    layer: LayerSpec,
    output: OutputSpec = None,
) -> tuple[dict[str, Tensor], str | None]:
    maps: dict[str, Tensor] = {}
    layer_name = layer if isinstance(layer, str) else None
    if named:
        explanation = compute_explanation(model, inputs, targets, layer, named, output=output)
        maps.update(explanation.maps)
        layer_name = explanation.layer_name
    for name, function in functions.items():
        result = function(model, inputs, targets.index)
        if not isinstance(result, Tensor) or result.ndim < 1 or result.shape[0] != inputs.shape[0]:
            raise ValueError(f"method {name!r} must return a tensor of maps (N, ...) with N = {inputs.shape[0]}.")
        maps[name] = result.detach().float()
    for name, value in maps.items():
        if value.numel() and not math.isfinite(float(value.abs().max())):
            raise ValueError(f"method {name!r} returned NaN or inf maps.")
    return maps, layer_name
