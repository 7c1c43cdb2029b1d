"""ModelHistogramMonitor: weight and activation histograms, and the model graph once, in TensorBoard."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks.probe import preserved_global_rng
from lightning_explain.core.compiled import named_eager_modules
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.recording import record_outputs


def leaf_activations(model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
    """The output of every leaf module (a module without children) for ``inputs``, detached copies.

    One forward pass in eval mode without gradients; the model is left exactly as found and
    its hooks are removed. Outputs that are not tensors are skipped; a module called several
    times keeps its first output.
    """
    leaves = {n: m for n, m in named_eager_modules(model) if n and next(m.children(), None) is None}  # plain names
    _, recorded = record_outputs(model, inputs, leaves)
    return {name: outputs[0] for name, outputs in recorded.items() if outputs}


class ModelHistogramMonitor(ScheduledProbeCallback):
    """Log histograms of the weights and of the activations on a probe batch, and the model's graph once.

    What TensorBoard's "Histograms"/"Distributions" and "Graphs" tabs show. At a baseline event
    before the first optimizer step, then every ``every_n_epochs`` epochs and/or
    ``every_n_steps`` steps, on global rank zero, at ``trainer.global_step``:

    - ``{prefix}/weights/{parameter}``: one histogram per parameter tensor (``weights=True``);
    - ``{prefix}/activations/{module}``: one histogram per leaf module's output on the probe
      batch, computed in eval mode without changing training (``activations=True``).

    With ``graph=True`` the model is traced once at fit start on the probe batch and written
    with ``SummaryWriter.add_graph`` to each TensorBoard logger; a model that cannot be traced
    gives a warning, never an error. Histograms and the graph need a ``TensorBoardLogger``.

    Args:
        every_n_epochs: log at the end of every this many epochs (``None`` = off).
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        weights: log weight histograms.
        activations: log activation histograms (needs a probe).
        graph: log the model graph once (needs a probe).
        probe: ``None`` = the first ``probe_size`` validation samples (else training samples);
            a tensor of inputs; or an ``(inputs, targets)`` pair.
        probe_size: how many samples to take when ``probe`` is None.
        unpack_batch: turns a batch into ``(inputs, targets or None)``; see :class:`ExplainCallback`.
        prefix: the logging namespace.

    Example::

        trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[ModelHistogramMonitor(every_n_steps=100)])
    """

    def __init__(
        self,
        *,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        weights: bool = True,
        activations: bool = True,
        graph: bool = True,
        probe: Any = None,
        probe_size: int = 8,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        prefix: str = "model",
    ) -> None:
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        for name, value in (("weights", weights), ("activations", activations), ("graph", graph)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}.")
        if not (weights or activations or graph):
            raise ValueError(
                "ModelHistogramMonitor has nothing to do: set at least one of weights, activations, graph."
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}.")
        self.weights = weights
        self.activations = activations
        self.graph = graph
        self.prefix = prefix

    def _state_key_fields(self) -> dict[str, Any]:
        return dict(
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            weights=self.weights,
            activations=self.activations,
            graph=self.graph,
            prefix=self.prefix,
        )

    # ----------------------------------------------------------------------------------- hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            if not self._writer.tensorboard:
                rank_zero_warn(
                    "ModelHistogramMonitor: histograms and graphs need a TensorBoardLogger, and the trainer has none, "
                    "so nothing will be logged. Add Trainer(logger=TensorBoardLogger('logs'))."
                )

    @property
    def _uses_probe(self) -> bool:  # type: ignore[override]
        return self.activations or self.graph  # weights alone need no data

    def _dry_run(self, trainer: Any, pl_module: Any) -> None:
        """One forward pass through the probe (a bad probe stops ``fit`` here); the graph, logged once."""
        if self.activations:
            leaf_activations(pl_module, self._device_probe.inputs)
        if self.graph and trainer.is_global_zero:
            self._log_graph(pl_module)

    def _compute(self, pl_module: Any) -> None:
        return None  # the histograms are read while logged, one tensor at a time

    # ------------------------------------------------------------------------------- the event
    def _log_event(self, pl_module: nn.Module, result: None, step: int) -> None:
        if not self._writer.tensorboard:
            return
        if self.weights:
            for name, parameter in pl_module.named_parameters():
                self._writer.histogram(f"{self.prefix}/weights/{name}", _host(parameter), step)
        if self.activations:
            for name, output in leaf_activations(pl_module, self._device_probe.inputs).items():
                if output.numel() and (output.is_floating_point() or output.dtype in (torch.int32, torch.int64)):
                    self._writer.histogram(f"{self.prefix}/activations/{name}", _host(output), step)

    def _log_graph(self, pl_module: nn.Module) -> None:
        """``add_graph`` on every TensorBoard logger, in eval mode, without touching RNG or weights."""
        if not self._writer.tensorboard:
            return
        inputs = self._device_probe.inputs
        try:
            with (
                explanation_mode(pl_module, inputs.device),
                torch.no_grad(),
                preserved_global_rng(),
                _lightning_scripting(pl_module),
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),  # the tracer prints its errors
            ):
                warnings.simplefilter("ignore")  # TracerWarnings about data-dependent control flow
                for logger in self._writer.tensorboard:
                    logger.experiment.add_graph(pl_module, inputs)
        except Exception as error:  # noqa: BLE001 - a graph is a nicety; training goes on
            self._warn(
                "graph",
                f"could not trace the model to log its graph ({type(error).__name__}: {str(error)[:300]}). "
                "Histograms are still logged; pass graph=False to silence this warning.",
            )


def _host(values: Tensor) -> Any:
    return values.detach().float().cpu().numpy()


def _lightning_scripting(module: nn.Module) -> contextlib.AbstractContextManager:
    """Lightning's own guard for tracing a LightningModule (its ``trainer`` property), when available."""
    try:
        from lightning.pytorch import LightningModule
        from lightning.pytorch.core.module import _jit_is_scripting
    except ImportError:  # pragma: no cover - a Lightning without the private helper
        return contextlib.nullcontext()
    return _jit_is_scripting() if isinstance(module, LightningModule) else contextlib.nullcontext()
