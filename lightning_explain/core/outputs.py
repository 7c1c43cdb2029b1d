"""Which tensor of a model's output is explained: logits as they are, or picked out of a dict, a tuple or a
Hugging Face ``ModelOutput``.

Every pass reads the model's output through :func:`select_output`, so one ``output=`` argument means the same
thing for every method and callback.

Example:
    >>> select_output({"logits": torch.zeros(2, 3), "loss": torch.tensor(0.0)}).shape  # doctest: +SKIP
    torch.Size([2, 3])
    >>> select_output((torch.zeros(2, 3), torch.zeros(2, 8)), 1).shape  # doctest: +SKIP
    torch.Size([2, 8])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from lightning_explain.core.validation import is_int

OutputSpec = str | int | Callable[[Any], Tensor] | None
"""``None`` = the default rule of :func:`select_output`; a ``str`` = a dict key (or attribute) of the output; an
``int`` = an index into a tuple or list output; a callable ``(output) -> Tensor`` for anything else."""


def check_output_spec(output: object) -> OutputSpec:
    """Return ``output`` when it is a valid :data:`OutputSpec`; raise ``ValueError`` naming the choices otherwise."""
    if output is None or isinstance(output, str) or is_int(output) or callable(output):
        return output
    raise ValueError(
        f"output must be None (logits, or a dict's / ModelOutput's 'logits', or a tuple's first element), a dict "
        f"key, a tuple index or a callable (output) -> Tensor; got {type(output).__name__}."
    )


def select_output(output: object, spec: OutputSpec = None) -> Tensor:
    """The tensor to explain in a model's ``output``.

    Default (``spec=None``): a tensor as is; a ``dict`` or ``ModelOutput`` (anything with a ``logits`` key or
    attribute) -> its ``logits``; a tuple or list -> its first element. A ``str`` takes that key (or attribute),
    an ``int`` that element, a callable is called with the output.

    Raises:
        TypeError: none of these gives a tensor; the message says which ``output=`` to pass.
    """
    if spec is None:
        chosen = _default(output)
    elif isinstance(spec, str):
        chosen = _key(output, spec)
    elif is_int(spec):
        chosen = output[spec] if isinstance(output, Sequence) and -len(output) <= spec < len(output) else None
        if chosen is None and _is_model_output(output):  # a ModelOutput also indexes by position
            values = tuple(output.values())
            chosen = values[spec] if -len(values) <= spec < len(values) else None
    else:
        chosen = spec(output)
    if isinstance(chosen, Tensor):
        return chosen
    raise TypeError(_message(output, spec, chosen))


def _default(output: object) -> object:
    if isinstance(output, Tensor):
        return output
    logits = _key(output, "logits")
    if logits is not None:
        return logits
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return None


def _key(output: object, key: str) -> object:
    if isinstance(output, Mapping):
        return output.get(key)
    return getattr(output, key, None)


def _is_model_output(output: object) -> bool:
    return isinstance(output, Mapping) and hasattr(output, "to_tuple")


def _message(output: object, spec: OutputSpec, chosen: object) -> str:
    what = type(output).__name__
    if isinstance(output, Mapping):
        what += f" with keys {list(output)}"
    elif isinstance(output, (tuple, list)):
        what += f" of {len(output)} ({', '.join(type(v).__name__ for v in output[:4])})"
    if spec is None:
        return (
            f"The model returned a {what}, and no logits tensor was found in it (a tensor, a 'logits' key or "
            "attribute, or a tuple's first element). Pass output= (a dict key, a tuple index, or a callable "
            "(output) -> Tensor) to say which tensor to explain."
        )
    found = "nothing" if chosen is None else type(chosen).__name__
    return (
        f"output={spec!r} gives {found} for the model's {what}, not a tensor; pass a key, index or callable that does."
    )
