"""What every probe callback does at fit start: take the probe, move it to the model, explain what fails."""

from __future__ import annotations

from typing import Any

import torch

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.probe import Probe, draws_from_its_own_stream, probe_loader, select_probe

WRAPPED_ERRORS = (RuntimeError, IndexError, TypeError, KeyError, AttributeError)
"""What PyTorch raises for a probe the model cannot take (shape, dtype, arguments, outputs, labels)."""


class FitStartChecks:
    """The probe and the dry run of :class:`~lightning_explain.callbacks._base.ProbeEventCallback`.

    A mixin: it uses the callback's ``probe_size``, ``unpack_batch``, ``_user_probe``, ``_probe``,
    ``_first_batch``, ``_warn`` and ``_start``.
    """

    def _needs_first_batch(self, trainer: Any) -> bool:
        """Whether a probe must come from the first training batch (an iterable training loader)."""
        return any(draws_from_its_own_stream(*probe_loader(trainer, source)) for source in self._probe_sources())

    def _take_probe(self, trainer: Any, source: str = "auto") -> Probe:
        """A probe from the trainer's data (or from the first training batch), on the CPU."""
        probe = select_probe(
            trainer,
            self.probe_size,
            self.unpack_batch or self._default_unpack_batch,
            source,
            owner=type(self).__name__,
            first_batch=self._first_batch,
            class_targets=self._class_targets,
        )
        if probe.forward_kwargs and not self._takes_forward_kwargs:
            raise ValueError(
                f"unpack_batch returned keyword arguments {sorted(probe.forward_kwargs)} beside the inputs, but "
                f"{type(self).__name__} calls the model with its inputs alone. Return (inputs, targets); for a text "
                "model whose forward takes input_ids and an attention_mask, use TokenExplainCallback."
            )
        return probe.to("cpu")

    _default_unpack_batch = None
    """What reads a batch when ``unpack_batch`` is not given (``None``: ``default_unpack_batch``)."""

    _takes_forward_kwargs = False
    """Whether the callback passes a probe's keyword arguments (``Probe.forward_kwargs``) to the model."""

    def _prepare_probe(self, trainer: Any, pl_module: Any) -> Probe:
        """Choose the probe once per series (or keep the one restored from a checkpoint); move it to the model."""
        if self._probe is None:
            given = self._user_probe
            self._probe = self._take_probe(trainer) if given is None else given.first(len(given))
        else:
            self._check_kept_probe(self._user_probe, self._probe, "probe=")
        self._device_probe = self._on_model(self._probe, pl_module)
        return self._device_probe

    def _check_kept_probe(self, given: Probe | None, kept: Probe, argument: str) -> None:
        """Say so when a resumed run keeps the checkpoint's probe although ``argument`` gave another."""
        if given is None or _same_probe(given, kept):
            return
        self._warn(
            f"kept-{argument}",
            f"{argument} differs from the probe saved in the checkpoint this run resumes; the checkpoint's probe "
            "is used, so the resumed series goes on explaining the same samples. To explain the new probe, use "
            "a new instance of the callback with a new logger version (its series starts afresh).",
        )

    def _on_model(self, probe: Probe, pl_module: Any) -> Probe:
        """``probe`` on the model's device; float inputs cast to the model's float dtype (a one-time note)."""
        moved = probe.to(pl_module.device)
        dtype = next((p.dtype for p in pl_module.parameters() if p.is_floating_point()), None)
        if dtype is not None and moved.inputs.is_floating_point() and moved.inputs.dtype != dtype:
            self._warn(
                "probe-dtype",
                f"the probe's inputs are {moved.inputs.dtype} and the model's parameters {dtype}; the probe is "
                f"cast to {dtype} (pass a {dtype} probe to silence this note).",
            )
            moved = moved.with_inputs(moved.inputs.to(dtype))
        return moved

    def _probes_for_message(self) -> dict[str, Probe | None]:
        """The probes an error at fit start describes, by argument name."""
        return {"probe": self._device_probe}

    def _checked_start(self, trainer: Any, pl_module: Any) -> None:
        """``_start``; every error is a ``MisconfigurationException`` (a raw PyTorch error turned into one that
        names the callback, the probe and the fix; a ``ValueError`` of an argument check keeps its message)."""
        try:
            self._start(trainer, pl_module)
        except WRAPPED_ERRORS as error:
            raise MisconfigurationException(self._fit_start_message(pl_module, error)) from error
        except ValueError as error:  # our own checks of arguments against the model and data: already clear
            owner = type(self).__name__
            message = str(error) if str(error).startswith(owner) else f"{owner}: {error}"
            raise MisconfigurationException(message) from error

    def _fit_start_message(self, pl_module: Any, error: BaseException) -> str:
        owner = type(self).__name__
        found = "; ".join(
            f"{name} inputs {_describe(probe.inputs)}"
            + ("" if probe.targets is None else f", targets {_describe(probe.targets)}")
            for name, probe in self._probes_for_message().items()
            if probe is not None
        )
        dtype = next((str(p.dtype) for p in pl_module.parameters()), "none")
        arguments = " or ".join(f"{name}=" for name in self._probes_for_message())
        hint = ""
        if "out of bounds" in str(error) or "out of range" in str(error):
            hint = " The targets must be class indices below the model's number of outputs."
        return (
            f"{owner} could not run the model on its probe at fit start: {type(error).__name__}: "
            f"{str(error).rstrip('.')}. It found {found or 'no probe yet'}, for a model with {dtype} parameters.{hint} "
            f"Pass {arguments} with inputs (and targets) the model takes, unpack_batch= that returns (inputs, targets) "
            "from your batches, output= to pick the logits out of a dict, tuple or ModelOutput the model returns, or "
            "wrap the model so that forward(inputs) alone returns its output (for a model that needs further "
            "arguments)."
        )


def _describe(values: torch.Tensor) -> str:
    text = f"{tuple(values.shape)} {values.dtype}"
    if values.numel() and not values.is_floating_point() and not values.is_complex() and values.dtype != torch.bool:
        text += f" in [{int(values.min())}, {int(values.max())}]"
    return text


def _same_probe(a: Probe, b: Probe) -> bool:
    def same(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
        if x is None or y is None:
            return x is y
        return x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.cpu(), y.cpu())

    kwargs_equal = a.forward_kwargs.keys() == b.forward_kwargs.keys() and all(
        same(a.forward_kwargs[key], b.forward_kwargs[key]) for key in a.forward_kwargs
    )
    return same(a.inputs, b.inputs) and same(a.targets, b.targets) and kwargs_equal
