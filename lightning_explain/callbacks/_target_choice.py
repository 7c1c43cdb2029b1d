"""The one check of a callback's ``target=``: the label, the prediction, a class (or a callable score)."""

from __future__ import annotations

from typing import Any

from lightning_explain.core.validation import is_int

TARGET_CHOICES = ("label", "predicted")
"""The named choices of ``target=``; an int (a class index >= 0) and ``None`` are the others."""


def check_target_choice(target: Any, *, callable_ok: bool = False) -> Any:
    """``target`` if it is ``None``, ``"label"``, ``"predicted"``, a class index >= 0 or (with ``callable_ok``) a
    callable ``(output, probe_targets) -> (N,) scores``; else ``ValueError``.

    Called in ``__init__``; what ``None`` means depends on the probe, so it is resolved at fit start
    by :func:`~lightning_explain.callbacks._heads.head_target_mode` for the model's head.
    """
    if target is None or (isinstance(target, str) and target in TARGET_CHOICES) or (callable(target) and callable_ok):
        return target
    if not is_int(target):
        also = ", a callable (output, probe_targets) -> (N,) scores" if callable_ok else ""
        raise ValueError(f"target must be 'label', 'predicted', a class index{also} or None, got {target!r}.")
    if target < 0:
        raise ValueError(f"target must be a class index >= 0, got {target}.")
    return target
