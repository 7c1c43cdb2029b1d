"""Where a vision transformer keeps its attention probabilities, for the methods that read them.

A method that reads attention (``MethodSpec(needs_attention=True)``, such as ``attention_rollout``) needs the
probability tensor each block actually multiplies by the values, (N, heads, T, T), inside the autograd graph, so
that its gradient is real. :func:`find_attention` finds one module per block whose forward output holds it:

- Hugging Face ``transformers`` ViT and relatives (a ``transformers`` class whose name ends with "Attention",
  the innermost such module), **eager attention only**: the module returns ``(attn_output, attn_weights)`` and
  with ``attn_implementation="eager"`` ``attn_weights`` is the softmax that is multiplied by V (dropout is the
  identity in eval mode), also without ``output_attentions=True``. The SDPA and flash kernels return ``None``
  there, so a model configured with them is refused with the fix in the message.
- timm ViT / DeiT / register models (``timm.layers.Attention`` and lookalikes: a ``fused_attn`` flag and an
  ``attn_drop`` module): with ``fused_attn = False`` they compute ``attn = softmax(q k^T * scale)`` and pass it
  through ``attn_drop`` (the identity in eval mode) before ``attn @ v``. :func:`unfused` switches the flag off
  for the call and back afterwards; ``attn_drop``'s output is hooked.
- torchvision's ``VisionTransformer`` (``nn.MultiheadAttention``) raises ``NotImplementedError``: called with
  ``need_weights=False`` it computes no probabilities, and with ``need_weights=True`` it returns a view taken
  after the product with V, outside the graph of the output (``autograd.grad`` raises "appears to not have
  been used in the graph"). Supporting it would take a temporary replacement of each ``self_attention`` by a
  module computing the same attention explicitly from ``in_proj_weight`` / ``in_proj_bias`` / ``out_proj``.

Example:
    >>> sites = find_attention(vit, "attention_rollout")  # doctest: +SKIP
    >>> len(sites.hooked)  # one module per block  # doctest: +SKIP
    12
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class AttentionSites:
    """The modules whose forward output holds each block's attention probabilities.

    Attributes:
        hooked: one module per block (in ``modules()`` order); its output, or the first 4-D tensor of its tuple
            output, is the block's probabilities (N, heads, T, T).
        fused: timm attention modules whose ``fused_attn`` must be ``False`` while they are read (see
            :func:`unfused`).
    """

    hooked: tuple[nn.Module, ...]
    fused: tuple[nn.Module, ...] = ()


def find_attention(model: nn.Module, method: str) -> AttentionSites:
    """The attention of ``model`` that ``method`` reads (see the module docstring for what is recognised).

    Raises:
        ValueError: no recognised attention (the message names ``method`` and says it is for ViT-style models),
            or a Hugging Face model configured with a kernel that returns no probabilities (SDPA, flash).
        NotImplementedError: ``nn.MultiheadAttention`` (torchvision's ViT), with the reason.
    """
    hf = [m for m in model.modules() if _is_hf_attention(m)]
    hf = [m for m in hf if not any(c is not m and _is_hf_attention(c) for c in m.modules())]  # innermost only
    if hf:
        for module in hf:
            kernel = getattr(getattr(module, "config", None), "_attn_implementation", None)
            if kernel not in (None, "eager"):
                raise ValueError(
                    f"{method} reads the attention probabilities, which Hugging Face's {kernel!r} attention does not "
                    'return. Use the eager attention: build the model with attn_implementation="eager" (e.g. '
                    'from_pretrained(..., attn_implementation="eager"), or a config with '
                    'attn_implementation="eager"), or call model.set_attn_implementation("eager").'
                )
        return AttentionSites(tuple(hf))
    timm = [
        m for m in model.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)
    ]
    if timm:
        return AttentionSites(tuple(m.attn_drop for m in timm), tuple(timm))
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise NotImplementedError(
            f"{method} cannot read nn.MultiheadAttention (torchvision's VisionTransformer): called with "
            "need_weights=False it computes no attention probabilities, and with need_weights=True it returns a "
            "view taken after the product with V, whose gradient autograd cannot give. Use a Hugging Face ViT "
            '(attn_implementation="eager") or a timm ViT, or explain this model with grad_cam.'
        )
    raise ValueError(
        f"{method} is for ViT-style models: it reads each block's attention probabilities, and "
        f"{type(model).__name__} has no attention it recognises (a Hugging Face ViT with eager attention, or "
        "timm's Attention with fused_attn and attn_drop). Drop it from methods for this model, or use grad_cam."
    )


def _is_hf_attention(module: nn.Module) -> bool:
    """A Hugging Face attention module: a ``transformers`` class whose name ends with "Attention"."""
    cls = type(module)
    return cls.__module__.startswith("transformers.") and cls.__name__.endswith("Attention")


def attention_probabilities(output: object) -> Tensor | None:
    """The probabilities in an attention site's output: the output itself, or its first 4-D tensor of a tuple."""
    if isinstance(output, Tensor):
        return output if output.ndim == 4 else None
    if isinstance(output, (tuple, list)):
        return next((t for t in output if isinstance(t, Tensor) and t.ndim == 4), None)
    return None


@contextlib.contextmanager
def unfused(sites: AttentionSites) -> Iterator[None]:
    """``fused_attn = False`` on the timm modules of ``sites`` inside the block; each flag restored on exit, also
    after an exception (an instance attribute as it was, a class-level default by removing the instance's)."""
    saved = [(m, "fused_attn" in vars(m), m.fused_attn) for m in sites.fused]
    try:
        for module in sites.fused:
            module.fused_attn = False
        yield
    finally:
        for module, own, flag in saved:
            if own:
                module.fused_attn = flag
            else:
                del module.fused_attn
