"""Argument validators: the one way the package checks numbers, counts and image inputs.

Each returns the value it checked, so a constructor can write ``self.steps = check_int("steps", steps, low=1)``,
and raises ``ValueError`` whose message names the argument, what it must be and what it got. ``bool`` is never
accepted where a number is meant (``True`` is an ``int`` in Python, but ``steps=True`` is a mistake).

Example:
    >>> check_int("steps", 8, low=2)
    8
    >>> check_number("noise", 0.1, low=0.0, finite=True)
    0.1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor


def is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or a ``float`` and not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(kind: str, low: float | None, high: float | None, low_open: bool = False) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    if low is not None and high is not None:
        return f"{article} {kind} from {low} to {high}" if not low_open else f"{article} {kind} > {low} and <= {high}"
    if low == 1 and kind == "int" and not low_open:
        return "a positive int"
    if low is not None:
        return f"{article} {kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{article} {kind} <= {high}"
    return f"{article} {kind}"


def check_int(
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    none_ok: bool = False,
    expected: str | None = None,
) -> int | None:
    """``value`` if it is an int (not a bool) within ``[low, high]``, or ``None`` when ``none_ok``.

    Args:
        name: the argument's name, as the user wrote it.
        value: what the user passed.
        low: the smallest allowed value (``None``: no bound).
        high: the largest allowed value (``None``: no bound).
        none_ok: accept ``None`` (and say so in the message).
        expected: what the value must be, in words, when the bounds alone do not say it
            (e.g. ``"a positive int (inputs per forward pass)"``).

    Raises:
        ValueError: ``"{name} must be {expected}, got {value!r}."``
    """
    if value is None and none_ok:
        return None
    if is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return value
    what = expected or _describe("int", low, high)
    raise ValueError(f"{name} must be {what}{' or None' if none_ok else ''}, got {value!r}.")


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = False,
    none_ok: bool = False,
    expected: str | None = None,
) -> float | int | None:
    """``value`` if it is an int or float (not a bool, not NaN) within the bounds, or ``None`` when ``none_ok``.

    Args:
        name: the argument's name.
        value: what the user passed.
        low: the lower bound (``None``: none); excluded when ``low_open``.
        high: the upper bound (``None``: none); excluded when ``high_open``.
        low_open: the lower bound itself is not allowed.
        high_open: the upper bound itself is not allowed.
        finite: reject ``inf`` and ``-inf``.
        none_ok: accept ``None``.
        expected: what the value must be, in words, overriding the message built from the bounds.

    Raises:
        ValueError: ``"{name} must be {expected}, got {value!r}."``
    """
    if value is None and none_ok:
        return None
    ok = is_number(value) and not math.isnan(value) and not (finite and math.isinf(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return value
    what = expected or _describe("finite number" if finite else "number", low, high, low_open)
    raise ValueError(f"{name} must be {what}{' or None' if none_ok else ''}, got {value!r}.")


def check_ints(name: str, values: object, *, low: int | None = None, expected: str | None = None) -> tuple[int, ...]:
    """A non-empty sequence of ints (no bools) each ``>= low``, as a tuple.

    Raises:
        ValueError: an empty sequence, or an item that is not such an int.
    """
    if (
        isinstance(values, Sequence)
        and not isinstance(values, str)
        and len(values) > 0
        and all(is_int(v) and (low is None or v >= low) for v in values)
    ):
        return tuple(values)
    what = expected or f"a non-empty sequence of ints{'' if low is None else f' >= {low}'}"
    raise ValueError(f"{name} must be {what}, got {values!r}.")


def check_images(inputs: Tensor, what: str, fix: str) -> Tensor:
    """``inputs`` if they are images ``(N, C, H, W)``.

    Args:
        inputs: the batch.
        what: who needs images and why, the start of the message (e.g. ``"Grad-CAM maps a layer back onto
            images"``).
        fix: the end of the message: what to do instead (e.g. ``"Drop 'grad_cam' from methods for non-image
            inputs."``).

    Raises:
        ValueError: ``"{what} (N, C, H, W); got inputs of shape {shape}. {fix}"``
    """
    if inputs.ndim != 4:
        raise ValueError(f"{what} (N, C, H, W); got inputs of shape {tuple(inputs.shape)}. {fix}")
    return inputs
