"""SanityCheckCallback: the model-parameter randomisation test once per run, its result in the logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException, rank_zero_warn
from lightning_explain.analysis.sanity_check import (
    DEFAULT_THRESHOLD,
    UNDEFINED_REASON,
    MapFunction,
    SanityCheckResult,
    sanity_check,
)
from lightning_explain.attribution.engine import check_methods, compute_explanation
from lightning_explain.callbacks._base import ProbeEventCallback
from lightning_explain.callbacks._heads import detect_head, head_target, head_target_mode
from lightning_explain.callbacks._target_choice import check_target_choice
from lightning_explain.core.compiled import named_eager_modules, plain_layer_name
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import check_logits, record_outputs
from lightning_explain.core.validation import check_int, check_number

WHEN = ("fit_start", "fit_end")


class SanityCheckCallback(ProbeEventCallback):
    """Run :func:`~lightning_explain.analysis.sanity_check` once per run on the probe batch (opt-in).

    Adebayo et al. (2018): an explanation method whose maps barely change when the model's
    weights are randomised shows the input, not the model. Once per run, at the end of
    training (``at="fit_end"``, the default: the test is about the trained model) or before
    the first step (``at="fit_start"``), on global rank zero, a deep copy of the model is
    randomised layer by layer (output first) and, at ``trainer.global_step``, the callback logs:

    - ``{prefix}/{method}/{layer}``: the mean Spearman rank correlation between the trained
      model's maps and the maps after randomising every layer down to ``layer``;
    - ``{prefix}/{method}/final``: the correlation with every layer randomised;
    - ``{prefix}/{method}/passed``: 1 when the maps depend on the weights, 0 when the final
      correlation is above ``threshold`` (then a warning names the method); not logged when the
      correlation is undefined (constant maps: the test measured nothing; a warning says so);
    - ``{prefix}/summary`` (TensorBoard text): the readable summary.

    The check needs memory for a second copy of the model and one explanation per method and
    layer; it never changes the trained model or the random number streams. Bad configuration
    (an unknown method, a layer that does not exist) stops ``fit`` before the first step.

    The model's head is found at fit start from its output for the probe, as :class:`ExplainCallback` finds it,
    and each sample is explained for what that head explains (a class, the highest-scoring true label of a
    multi-label sample, a regression model's one output).

    Args:
        methods: method names accepted by ``compute_explanation`` or callables
            ``(model, inputs, targets) -> maps``.
        at: ``"fit_end"`` or ``"fit_start"``.
        layer: the Grad-CAM layer (see :class:`ExplainCallback`).
        layers: the layers to randomise, output first; ``None`` = every layer with parameters.
        target: ``"label"``, ``"predicted"``, a class index, or ``None`` = the label when the probe
            has labels, else the prediction (a regression head explains its output: leave it ``None``).
        threshold: the failure threshold of the final correlation, in (-1, 1).
        seed: seeds the randomisation (a local generator).
        probe: ``None`` = the first ``probe_size`` validation samples (else training samples), a
            tensor, or an ``(inputs, targets)`` pair.
        probe_size: how many samples to take when ``probe`` is None.
        unpack_batch: turns a batch into ``(inputs, targets or None)``.
        output: the tensor of the model's output to read: ``None`` = a tensor as is, a dict's or ModelOutput's
            ``logits``, a tuple's first element; or a key, an index or a callable (see ``select_output``).
        prefix: the logging namespace.

    Example::

        trainer = Trainer(callbacks=[ExplainCallback(), SanityCheckCallback()])
    """

    def __init__(
        self,
        *,
        methods: Sequence[str | MapFunction] = ("saliency", "grad_cam"),
        at: Literal["fit_start", "fit_end"] = "fit_end",
        layer: str | nn.Module | None = None,
        layers: Sequence[str] | None = None,
        target: Literal["label", "predicted"] | int | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        seed: int = 0,
        probe: Any = None,
        probe_size: int = 8,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        output: OutputSpec = None,
        prefix: str = "sanity_check",
    ) -> None:
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.output = check_output_spec(output)
        methods = (methods,) if isinstance(methods, str) or callable(methods) else tuple(methods)
        bad = [m for m in methods if not isinstance(m, str) and not callable(m)]
        if not methods or bad:
            raise ValueError(
                f"methods must hold method names or callables (model, inputs, targets) -> maps; got {bad}."
            )
        names = [m for m in methods if isinstance(m, str)]
        if names:
            check_methods(names)
        if at not in WHEN:
            raise ValueError(f"at must be one of {list(WHEN)}, got {at!r}.")
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise ValueError(f"layer must be a module name, a module or None, got {type(layer).__name__}.")
        if layers is not None and (isinstance(layers, str) or not layers):
            raise ValueError(f"layers must be a non-empty list of module names or None, got {layers!r}.")
        check_target_choice(target)
        check_number(
            "threshold", threshold, low=-1, high=1, low_open=True, high_open=True, expected="a number in (-1, 1)"
        )
        check_int("seed", seed, expected="an int")
        self.methods = methods
        self.at = at
        self.layer = layer
        self.layers = None if layers is None else list(layers)
        self.target = target
        self.threshold = float(threshold)
        self.seed = seed
        self.prefix = prefix
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self.result: SanityCheckResult | None = None
        self._done = False
        self._head = "classification"
        self._target_mode: str | int = "predicted"
        self._layer_name: str | None = None

    def _state_key_fields(self) -> dict[str, Any]:
        methods = tuple(m if isinstance(m, str) else getattr(m, "__name__", type(m).__name__) for m in self.methods)
        layer = self.layer if isinstance(self.layer, str) or self.layer is None else type(self.layer).__name__
        return dict(methods=methods, at=self.at, layer=layer, seed=self.seed, prefix=self.prefix)

    _class_targets = False  # regression values and multi-label rows are kept for the head to read

    @property
    def head(self) -> str:
        """The model head found at fit start: ``"classification"``, ``"multilabel"``, ``"regression"`` or
        ``"segmentation"``."""
        return self._head

    # ----------------------------------------------------------------------------------- hooks
    def _dry_run(self, trainer: Any, pl_module: Any) -> None:
        """Find the head from one forward pass, explain the probe once with the named methods and check
        ``layers``: bad configuration stops ``fit``."""
        probe = self._device_probe
        raw, _ = record_outputs(pl_module, probe.inputs, {})
        logits = check_logits(raw, self.output)
        self._head = detect_head(logits, probe.targets, self.target, "SanityCheckCallback")
        self._target_mode = head_target_mode("SanityCheckCallback", self._head, self.target, probe.targets)
        names = tuple(m for m in self.methods if isinstance(m, str))
        if names:
            explanation = compute_explanation(
                pl_module, probe.inputs, self._targets(), self.layer, names, output=self.output
            )
            self._layer_name = explanation.layer_name  # resolved once, then used by name
        if self.layers is not None:
            missing = [n for n in self.layers if plain_layer_name(n) not in dict(named_eager_modules(pl_module))]
            if missing:
                raise MisconfigurationException(f"layers {missing} are not modules of {type(pl_module).__name__}.")

    def _baseline_wanted(self, trainer: Any) -> bool:
        return self.at == "fit_start" and not self._done  # once per run, whether or not it resumed

    def _log_event(self, pl_module: Any, result: None, step: int) -> None:
        self._run(pl_module, step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """With ``at="fit_end"``: the check, once per run."""
        if self.at == "fit_end" and not self._done:
            self._event(trainer, lambda step: self._run(pl_module, step))

    # ------------------------------------------------------------------------------- the event
    def _targets(self) -> Any:
        return head_target(self._target_mode, self._device_probe)

    def _run(self, pl_module: Any, step: int) -> None:
        self._done = True  # once per run, also when it fails
        result = sanity_check(
            pl_module,
            self._device_probe.inputs,
            self._targets(),
            methods=self.methods,
            layer=self._layer_name or self.layer,
            layers=self.layers,
            threshold=self.threshold,
            seed=self.seed,
            warn=False,
            output=self.output,
        )
        self.result = result
        scalars: dict[str, float] = {}
        for method, series in result.correlations.items():
            for name, rho in series:
                if rho == rho:  # NaN: undefined, left out
                    scalars[f"{self.prefix}/{method}/{name}"] = rho
            if series and series[-1][1] == series[-1][1]:
                scalars[f"{self.prefix}/{method}/final"] = series[-1][1]
            if not result.undefined.get(method):  # nothing measured: neither passed nor failed
                scalars[f"{self.prefix}/{method}/passed"] = float(result.passed[method])
        self._writer.scalars(scalars, step)
        for logger in self._writer.tensorboard:
            logger.experiment.add_text(f"{self.prefix}/summary", "    " + result.summary.replace("\n", "\n    "), step)
        undefined = [m for m, flag in result.undefined.items() if flag]
        if undefined:
            rank_zero_warn(f"SanityCheckCallback: the result for {undefined} is undefined: {UNDEFINED_REASON}.")
        failed = [m for m, ok in result.passed.items() if not ok and m not in undefined]
        if failed:
            rank_zero_warn(
                f"SanityCheckCallback: the maps of {failed} do not depend on the model's weights (rank correlation "
                f"above {self.threshold} after randomising every layer, Adebayo et al. 2018).\n{result.summary}"
            )

    # ------------------------------------------------------------------------------ checkpoint
    def _extra_state(self) -> dict[str, Any]:
        return {"done": self._done}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._done = bool(state.get("done", False))
