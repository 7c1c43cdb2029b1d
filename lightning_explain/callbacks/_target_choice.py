"""The one rule for what a callback's ``target=`` explains: the label, the prediction or a class."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.validation import is_int

TARGET_CHOICES = ("label", "predicted")
"""The named choices of ``target=``; an int (a class index >= 0) and ``None`` are the others."""


def check_target_choice(target: Any, *, callable_ok: bool = False) -> Any:
    """``target`` if it is ``None``, ``"label"``, ``"predicted"``, a class index >= 0 or (with ``callable_ok``) a
    callable ``(output, probe_targets) -> (N,) scores``; else ``ValueError``.

    Called in ``__init__``; what ``None`` means depends on the probe, so it is resolved at fit start
    by :func:`resolve_target_mode`.
    """
    if target is None or (isinstance(target, str) and target in TARGET_CHOICES) or (callable(target) and callable_ok):
        return target
    if not is_int(target):
        also = ", a callable (output, probe_targets) -> (N,) scores" if callable_ok else ""
        raise ValueError(f"target must be 'label', 'predicted', a class index{also} or None, got {target!r}.")
    if target < 0:
        raise ValueError(f"target must be a class index >= 0, got {target}.")
    return target


def resolve_target_mode(owner: str, target: str | int | None, targets: Tensor | None) -> str | int:
    """What ``target=`` means for a probe: ``"label"``, ``"predicted"`` or a class index.

    ``None`` is the label when every probe sample has one, else the prediction; ``"label"`` on a
    probe without labels, or with negative ones (-100: unlabelled samples, which the losses
    ignore), is a configuration error, raised at fit start.
    """
    unlabelled = 0 if targets is None else int((targets < 0).sum())
    if target is None:
        return "label" if targets is not None and not unlabelled else "predicted"
    if target == "label" and targets is None:
        raise MisconfigurationException(
            f"{owner}(target='label') needs a probe with class labels, but the probe has none. "
            "Use target='predicted', pass probe=(inputs, targets), or give unpack_batch= that returns targets."
        )
    if target == "label" and unlabelled:
        raise MisconfigurationException(
            f"{owner}(target='label'): {unlabelled} of the probe's {len(targets)} labels are negative (such as -100, "
            "unlabelled samples that the losses ignore), so they name no class to explain. Use target='predicted', "
            "or pass probe=(inputs, targets) with a label for every sample."
        )
    return target


def probe_target(mode: str | int, probe: Probe) -> Tensor | int | None:
    """The ``target`` argument of an attribution function for a resolved mode: the probe's labels,
    ``None`` (the prediction) or the class index."""
    if mode == "label":
        return probe.targets
    return None if mode == "predicted" else mode
