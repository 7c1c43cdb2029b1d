"""GradientNormMonitor: per-layer gradient norms as scalars and a histogram."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks._base import ProbeEventCallback, check_positive_int
from lightning_explain.gradient_norms import grouped_norms, parameter_owners, probe_loss_gradients

SOURCES = ("train", "probe")


class GradientNormMonitor(ProbeEventCallback):
    """Log the gradient norm of every layer (a module that owns parameters) and their total.

    Per event, at ``trainer.global_step``: ``{prefix}/{source}/{layer}`` and
    ``{prefix}/{source}/total`` scalars, and a ``{prefix}/{source}/layers`` histogram of the
    per-layer norms. Layers without a gradient at that step (frozen, unused) are left out.

    Args:
        source: ``"train"``: the real training gradients, read in ``on_before_optimizer_step``
            (after gradient accumulation; under AMP the norms are of the unscaled gradients, also
            for optimizers such as fused Adam that unscale inside ``step``; steps whose gradients
            hold NaN or inf, which the AMP scaler skips, are not logged). ``"probe"``: gradients of
            ``loss_fn`` on a fixed probe batch, in eval mode, computed without touching ``.grad``
            (a baseline event at step 0, then every ``every_n_steps`` steps).
        every_n_steps: log every this many optimizer steps; ``None`` = ``trainer.log_every_n_steps``.
        norm_type: the p of the p-norm (``float("inf")`` for the max norm).
        probe: for ``source="probe"``: ``None`` = the first ``probe_size`` validation samples
            (else training samples), or an ``(inputs, targets)`` pair.
        probe_size: how many samples when ``probe`` is None.
        loss_fn: ``loss_fn(logits, targets) -> loss`` for ``source="probe"``; cross-entropy by default.
        unpack_batch: turns a batch into ``(inputs, targets)``; see :class:`ExplainCallback`.
        log_histogram: whether to log the histogram of per-layer norms.
        prefix: the logging namespace.

    Example::

        trainer = Trainer(callbacks=[GradientNormMonitor(every_n_steps=10)])
    """

    def __init__(
        self,
        *,
        source: Literal["train", "probe"] = "train",
        every_n_steps: int | None = None,
        norm_type: float = 2.0,
        probe: Any = None,
        probe_size: int = 32,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        log_histogram: bool = True,
        prefix: str = "grad_norm",
    ) -> None:
        self._class_targets = loss_fn is None  # a loss of your own may take any targets (regression values)
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}.")
        check_positive_int("every_n_steps", every_n_steps, allow_none=True)
        if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or not norm_type > 0:
            raise ValueError(f"norm_type must be a positive number or float('inf'), got {norm_type!r}.")
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (logits, targets) -> loss, got {loss_fn!r}.")
        if source == "train" and probe is not None:
            raise ValueError("probe= is only used with source='probe'; drop it or set source='probe'.")
        self.source = source
        self.every_n_steps = every_n_steps
        self.norm_type = float(norm_type)
        self.loss_fn = loss_fn
        self.log_histogram = log_histogram
        self.prefix = prefix
        self._interval = every_n_steps or 1
        self._layer_names: list[str] = []
        self._owner: dict[nn.Parameter, int] = {}

    def _state_key_fields(self) -> dict[str, Any]:
        return dict(
            source=self.source,
            every_n_steps=self.every_n_steps,
            norm_type=self.norm_type,
            probe_size=self.probe_size,
            prefix=self.prefix,
        )

    # ----------------------------------------------------------------------------------- hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._interval = self.every_n_steps or trainer.log_every_n_steps or 1

    @property
    def _start_runs_model(self) -> bool:  # type: ignore[override]
        return self.source == "probe"

    def _probe_sources(self) -> list[str]:
        return super()._probe_sources() if self.source == "probe" else []

    def _start(self, trainer: Any, pl_module: Any) -> None:
        self._layer_names, self._owner = parameter_owners(pl_module)
        if self.source != "probe":
            return
        probe = self._prepare_probe(trainer, pl_module)
        if probe.targets is None:
            raise MisconfigurationException(
                "GradientNormMonitor(source='probe') needs a probe with targets for its loss, but the probe has "
                "none. Pass probe=(inputs, targets), or unpack_batch= that returns targets. Targets that are not "
                "class indices (regression values, masks) are kept only with a loss for them: pass loss_fn= as well "
                "(e.g. loss_fn=torch.nn.functional.mse_loss)."
            )
        grads, groups = self._probe_gradients(pl_module)  # a dry run: bad configuration stops fit here
        if self._baseline_due(trainer):
            self._event(trainer, lambda step: self._log(grads, groups, step))

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.source == "train" and trainer.global_step % self._interval == 0:
            self._event(trainer, lambda step: self._log_train(trainer, optimizer, step))

    def _after_train_batch(self, trainer: Any, pl_module: Any) -> None:
        if self.source == "probe" and trainer.global_step % self._interval == 0:
            self._event(trainer, lambda step: self._log(*self._probe_gradients(pl_module), step))

    # ------------------------------------------------------------------------------- the event
    def _train_gradients(self, optimizer: Any) -> tuple[list[Tensor], list[int]]:
        grads, groups = [], []
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None and parameter in self._owner:
                    grads.append(parameter.grad)
                    groups.append(self._owner[parameter])
        return grads, groups

    def _log_train(self, trainer: Any, optimizer: Any, step: int) -> None:
        grads, groups = self._train_gradients(optimizer)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        # Lightning unscales AMP gradients before this hook, except for optimizers that unscale
        # inside their own step (e.g. fused Adam): their gradients are still multiplied by the scale.
        still_scaled = scaler is not None and scaler.is_enabled() and _unscales_in_step(optimizer)
        self._log(grads, groups, step, divide_by=scaler.get_scale() if still_scaled else 1.0, scaler=scaler)

    def _probe_gradients(self, pl_module: Any) -> tuple[list[Tensor], list[int]]:
        parameters = [p for p in self._owner if p.requires_grad]
        probe = self._device_probe
        grads = probe_loss_gradients(pl_module, probe.inputs, probe.targets, parameters, self.loss_fn)
        kept = [(g, self._owner[p]) for p, g in zip(parameters, grads, strict=True) if g is not None]
        return [g for g, _ in kept], [i for _, i in kept]

    def _log(
        self, grads: Sequence[Tensor], groups: Sequence[int], step: int, divide_by: float = 1.0, scaler: Any = None
    ) -> None:
        if not grads:
            return
        layer_norms, total = grouped_norms(grads, groups, len(self._layer_names), self.norm_type)
        present = sorted(set(groups))
        values = torch.cat([layer_norms[present], total[None]]).cpu() / divide_by  # the one host transfer
        host = values.tolist()  # Python floats at once: indexing a tensor per value costs microseconds each
        if not math.isfinite(host[-1]):
            if scaler is not None:
                self._warn(
                    "amp-skipped",
                    f"gradients hold NaN or inf at step {step}, so the AMP grad scaler skips this optimizer step "
                    "(normal while the loss scale calibrates); such steps are not logged as norms.",
                )
            else:
                self._warn("nonfinite", f"gradients hold NaN or inf at step {step}; their norms are not logged.")
            return
        key = f"{self.prefix}/{self.source}"
        scalars = {f"{key}/{self._layer_names[i]}": v for i, v in zip(present, host[:-1], strict=True)}
        scalars[f"{key}/total"] = host[-1]
        self._writer.scalars(scalars, step)
        if self.log_histogram:
            self._writer.histogram(f"{key}/layers", values[:-1].numpy(), step)

    # ------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return self._base_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_base_state(state_dict)


def _unscales_in_step(optimizer: Any) -> bool:
    """Whether ``optimizer`` unscales AMP gradients inside its own ``step`` (Lightning then skips ``unscale_``)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # Lightning may wrap it
    return bool(getattr(inner, "_step_supports_amp_scaling", False))
