"""The method registry: one :class:`MethodSpec` per attribution method, registered by the method's own module.

A spec says everything the engine (:mod:`lightning_explain.attribution.engine`) needs to know about a method
without importing it: which shared pass feeds it, whether it needs a layer, float inputs or images, its
options with their defaults and their check, and the function that turns the passes into a map. Each module in
:mod:`lightning_explain.attribution.methods` calls :func:`register` once at import; that package imports every
module in it, so a new method is one new module there.

Example:
    >>> from lightning_explain.attribution.registry import MethodSpec, register  # doctest: +SKIP
    >>> register(
    ...     MethodSpec(
    ...         name="gradient_x_input",
    ...         summary="the input times its gradient",
    ...         passes=frozenset({"plain"}),
    ...         input_grad=True,
    ...         needs_float=True,
    ...         defaults={"reduce": "max_abs"},
    ...         check=lambda reduce: check_reduce(reduce),
    ...         compute=lambda ctx, reduce: reduce_channels(ctx.inputs * ctx.plain.input_grad, reduce),
    ...     )
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from lightning_explain.core.gradients import GradientPass
from lightning_explain.core.layout import LayerLayout
from lightning_explain.core.targets import Target
from lightning_explain.core.tokens import TokenBatch

INPUT_KINDS = ("dense", "tokens")
"""What a method explains: ``"dense"`` inputs (float tensors: images, tables, sequences), differentiated or
perturbed themselves, or ``"tokens"`` (integer ids of a text model), explained at the embedding layer's output, one
value per token. The two kinds keep separate names (``saliency`` exists in both)."""

SHARED_PASSES = ("plain", "forward", "guided")
"""The passes the engine runs at most once per call and hands to every method that reads them:

- ``"plain"``: one forward and one backward pass (:func:`~lightning_explain.core.gradients.gradient_pass`) to the
  layer's output and, when a method sets ``input_grad``, to the input;
- ``"forward"``: the layer's output only (no backward); served by the plain pass when that runs anyway;
- ``"guided"``: one forward and one backward pass with guided ReLUs
  (:func:`~lightning_explain.attribution.passes.guided_gradient_pass`).

A method with no shared pass (``passes=frozenset()``) runs its own passes inside ``compute`` for the targets the
engine resolved once (integrated gradients, SmoothGrad, occlusion)."""


@dataclass
class MethodContext:
    """What a method's ``compute`` gets: the call's inputs and the shared passes that ran.

    Attributes:
        model: the model (a method that runs its own passes uses it; leave it as found).
        inputs: the batch.
        target: the :class:`~lightning_explain.core.targets.Target` resolved once for every method (the class,
            segment or score each sample is explained for, and which output tensor is read); pass it on to a
            method's own passes (``gradient_pass(model, x, context.target.repeat(copies))``, ``target.select`` /
            ``target.scores`` for forward passes) so they explain the same thing.
        logits: the model's detached output for ``inputs``.
        layer_name: the layer's name when a method needs a layer, else ``None``.
        plain: the plain shared pass, when one ran.
        guided: the guided shared pass, when one ran.
        activation: the layer's output when a layer was requested.
        layer: the layer module itself, when a method needs a layer.
        layout: the layer output's layout (:class:`~lightning_explain.core.layout.LayerLayout`), set by the layer
            methods when they read it (``None`` before, or when no method needs a layer).
        tokens: token methods only: the :class:`~lightning_explain.core.tokens.TokenBatch` (ids, attention mask,
            keyword arguments) that calls the model; ``layer`` is then the embedding layer and the plain pass holds
            its output and gradient.
    """

    model: nn.Module
    inputs: Tensor
    target: Target
    logits: Tensor
    layer_name: str | None = None
    plain: GradientPass | None = None
    guided: GradientPass | None = None
    activation: Tensor | None = None
    layer: nn.Module | None = None
    layout: LayerLayout | None = None
    tokens: TokenBatch | None = None

    @property
    def size(self) -> tuple[int, ...]:
        """The inputs' spatial size ``(H, W)`` (what layer maps are upsampled to)."""
        return tuple(self.inputs.shape[2:])


@dataclass(frozen=True)
class MethodSpec:
    """How one attribution method is computed, for the engine.

    Attributes:
        name: the name users pass in ``methods=`` (``explain``, the callbacks, the sanity check).
        summary: one line for the docs and error messages (what the map shows).
        compute: ``(context, **options) -> map``: turns the shared passes (or its own passes) into a float32
            map (N, H, W) (or what ``reduce=None`` asks for); for ``output="activation"`` the layer's output.
        passes: the shared passes it reads, a subset of
            :data:`~lightning_explain.attribution.registry.SHARED_PASSES`; empty = its own passes.
        input_grad: it reads the plain pass's input gradient (so the plain pass computes it).
        needs_layer: it explains a layer (``layer=``; found automatically when ``None``); implies image inputs.
        needs_float: it differentiates or perturbs the inputs, so they must be floating point.
        needs_images: it works on images (N, C, H, W) only; ``images_reason`` says why, in the error.
        images_reason: completes "{name} ... (N, C, H, W)" in the error for non-image inputs.
        needs_attention: it reads a vision transformer's attention probabilities; the engine refuses a model
            without attention it recognises (:func:`~lightning_explain.core.attention.find_attention`).
        defaults: its keyword options and their defaults (what ``options={name: {...}}`` may set).
        check: called with every option (defaults filled in) at configuration time; raises ``ValueError``
            for a bad value. Checks that need the inputs (a baseline's shape) belong in ``compute``.
        output: ``"map"`` (a heatmap) or ``"activation"`` (the layer's output, such as feature maps).
        input_kind: ``"dense"`` or ``"tokens"`` (:data:`~lightning_explain.attribution.registry.INPUT_KINDS`): a
            token method reads the plain pass at the embedding layer (``context.plain.activation`` and
            ``activation_grad``, (N, T, D)) and returns one value per token (N, T).
    """

    name: str
    summary: str
    compute: Callable[..., Tensor]
    passes: frozenset[str] = frozenset()
    input_grad: bool = False
    needs_layer: bool = False
    needs_float: bool = False
    needs_images: bool = False
    images_reason: str = "works on images"
    needs_attention: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[..., None] | None = None
    output: str = "map"
    input_kind: str = "dense"

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"{self.name}: input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}.")
        unknown = set(self.passes) - set(SHARED_PASSES)
        if unknown:
            raise ValueError(f"{self.name}: unknown shared pass(es) {sorted(unknown)}; choose from {SHARED_PASSES}.")
        if self.output not in ("map", "activation"):
            raise ValueError(f"{self.name}: output must be 'map' or 'activation', got {self.output!r}.")
        if self.input_grad and "plain" not in self.passes:
            raise ValueError(f"{self.name}: input_grad=True reads the plain pass; add 'plain' to passes.")

    @property
    def images_only(self) -> bool:
        """Whether the method needs image inputs (N, C, H, W): a layer method, or one that says so."""
        return self.needs_layer or self.needs_images

    def check_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with the defaults filled in, after :attr:`check`; ``ValueError`` for unknown names."""
        unknown = [key for key in values if key not in self.defaults]
        if unknown:
            valid = list(self.defaults) or "none"
            raise ValueError(f"{self.name} takes no option(s) {unknown}; its options: {valid}.")
        given = {**self.defaults, **values}
        if self.check is not None:
            self.check(**given)
        return given


_REGISTRY: dict[tuple[str, str], MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (once per name and input kind) and return it.

    Raises:
        ValueError: another spec of the same input kind already has that name.
    """
    key = (spec.input_kind, spec.name)
    if key in _REGISTRY and _REGISTRY[key] is not spec:
        raise ValueError(f"A {spec.input_kind} method named {spec.name!r} is already registered; choose another name.")
    _REGISTRY[key] = spec
    return spec


def registered(input_kind: str = "dense") -> tuple[MethodSpec, ...]:
    """Every registered spec of ``input_kind``: heatmap methods that read the shared passes, then those that run
    their own passes, then those that return activations; in registration order (the methods package imports by
    name) within each."""
    specs = [spec for (kind, _), spec in _REGISTRY.items() if kind == input_kind]
    return tuple(sorted(specs, key=lambda s: (s.output != "map", not s.passes)))


def method_names(input_kind: str = "dense") -> tuple[str, ...]:
    """The names of :func:`registered`, in its order."""
    return tuple(spec.name for spec in registered(input_kind))


def get_spec(name: str, input_kind: str = "dense") -> MethodSpec:
    """The spec of ``input_kind`` registered as ``name``.

    Raises:
        ValueError: no method of that kind has that name; the message lists the valid ones.
    """
    if (input_kind, name) not in _REGISTRY:
        kind = "" if input_kind == "dense" else f" for {input_kind}"
        raise ValueError(f"Unknown method {name!r}{kind}; valid choices: {list(method_names(input_kind))}.")
    return _REGISTRY[(input_kind, name)]
