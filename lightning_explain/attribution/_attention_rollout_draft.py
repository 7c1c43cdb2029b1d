"""DRAFT, not registered and not imported by the package: gradient-weighted attention rollout for vision transformers.

The method of Chefer, Gur and Wolf (2021), "Generic Attention-model Explainability for Interpreting Bi-Modal
and Encoder-Decoder Transformers", for a ViT classifier: with ``A_b`` the attention probabilities of block ``b``
(N, heads, T, T) and ``S`` the target's logit,

    R = I;  for each block b in order:  R <- R + mean_heads((dS/dA_b * A_b).clamp(min=0)) @ R

and the map is the CLS token's row of ``R`` over the patch tokens, reshaped to the patch grid and upsampled
bilinearly to the input (as Grad-CAM is). ``benchmarks/study_transformer_maps.py`` measures it against
Grad-CAM at the last block (see ``benchmarks/RESULTS.md``); the lead engineer decides whether to register it.

Where the attention probabilities come from. The rollout needs the probability tensor the block actually
multiplies by the values, so that ``dS/dA`` is its real gradient. :func:`attention_rollout` finds one module
per block that yields it and captures it with a forward hook:

- Hugging Face ``transformers`` ViT (``ViTForImageClassification`` and relatives), **eager attention only**:
  each block's ``ViTAttention`` returns ``(attn_output, attn_weights)``, and with
  ``attn_implementation="eager"`` ``attn_weights`` is the softmax output that is multiplied by V (dropout is the
  identity in eval mode), also without ``output_attentions=True``. The SDPA and flash kernels return ``None``
  there: build the model with ``attn_implementation="eager"`` (or switch it, e.g.
  ``model.set_attn_implementation("eager")`` where the installed version has it). Checked on transformers 5.x.
- timm ViT (``timm.models.vision_transformer.Attention`` and lookalikes): these modules have ``fused_attn``;
  when it is False they compute ``attn = softmax(q k^T * scale)`` and pass it through ``attn_drop`` (an
  ``nn.Dropout``, the identity in eval mode) before ``attn @ v``. The function sets ``fused_attn = False``
  for the call (restored afterwards) and hooks ``attn_drop``'s output. Not run here: timm is not installed
  in this project's environment; a test against a real timm model is needed before registering.
- torchvision ``VisionTransformer``: ``EncoderBlock`` calls its ``nn.MultiheadAttention`` with
  ``need_weights=False``, so no probability tensor exists. Forcing ``need_weights=True,
  average_attn_weights=False`` is not enough: the weights it returns are a view taken after the product with
  V, outside the graph of the output (``autograd.grad`` raises "appears to not have been used in the graph").
  It would take a temporary replacement of each ``self_attention`` by a module that computes the same
  attention explicitly from ``in_proj_weight``/``in_proj_bias``/``out_proj`` (split heads, scaled scores,
  softmax -- the hook point --, ``@ v``, merge heads, ``out_proj``), tested equal to
  ``nn.MultiheadAttention``'s output. Not done: :func:`attention_rollout` raises ``NotImplementedError`` for it.

Other models: pass ``attention_modules`` (one module per block, in order) whose forward output, or first 4-D
tensor in a tuple output, is that block's probability tensor (N, heads, T, T).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.recording import check_logits
from lightning_explain.core.targets import TargetSpec, select_targets


def find_attention_modules(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(modules to hook, timm attention modules whose fused_attn must be off)``, one hooked module per block.

    Raises ``ValueError`` when no known attention is found and ``NotImplementedError`` for
    ``nn.MultiheadAttention`` (torchvision), explaining what it would take.
    """
    hf = [m for m in model.modules() if _is_hf_attention(m)]
    hf = [m for m in hf if not any(c is not m and _is_hf_attention(c) for c in m.modules())]  # innermost only
    if hf:
        return hf, []
    timm = [
        m for m in model.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)
    ]
    if timm:
        return [m.attn_drop for m in timm], timm
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise NotImplementedError(
            "nn.MultiheadAttention (torchvision's ViT) exposes no attention probabilities inside the graph: called "
            "with need_weights=False it computes none, and with need_weights=True it returns a view taken after the "
            "product with V, whose gradient autograd cannot give. Pass attention_modules= with modules that compute "
            "the attention explicitly (see this module's docstring)."
        )
    raise ValueError(
        "No attention modules found (Hugging Face ViTAttention with eager attention, or timm Attention with "
        "fused_attn and attn_drop). Pass attention_modules=[one module per block, in order]."
    )


def _is_hf_attention(module: nn.Module) -> bool:
    """A Hugging Face attention module: a ``transformers`` class whose name ends with "Attention"."""
    cls = type(module)
    return cls.__module__.startswith("transformers.") and cls.__name__.endswith("Attention")


def attention_rollout(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    *,
    attention_modules: Sequence[nn.Module] | None = None,
    drop_tokens: int = 1,
    grid: tuple[int, int] | None = None,
) -> Tensor:
    """Gradient-weighted attention rollout (Chefer et al., 2021): (N, H, W) float32 at input resolution.

    Computed in eval mode with gradients enabled (also under ``no_grad``/``inference_mode``); training flags,
    ``fused_attn`` switches and hooks are restored, parameters' ``.grad`` untouched (``autograd.grad``).

    Args:
        model: a ViT classifier whose forward returns logits (N, K) (wrap a Hugging Face model so that it returns
            ``.logits``).
        inputs: images (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        attention_modules: one module per block whose output is (or whose tuple output's first 4-D tensor is) that
            block's attention probabilities (N, heads, T, T); ``None`` finds them (see the module docstring).
        drop_tokens: the leading non-patch tokens (1 = a CLS token, whose row is read).
        grid: the patch grid (h, w); ``None`` = square.
    """
    if inputs.ndim != 4:
        raise ValueError(f"attention_rollout needs images (N, C, H, W); got shape {tuple(inputs.shape)}.")
    if attention_modules is None:
        hooked, fused = find_attention_modules(model)
    else:
        hooked, fused = list(attention_modules), []
    captured: list[Tensor] = []

    def keep(module: nn.Module, args: object, output: object) -> None:
        probabilities = _probabilities(output)
        if probabilities is None:
            raise ValueError(
                f"{type(module).__name__} returned no attention probabilities; for Hugging Face models use "
                'attn_implementation="eager".'
            )
        captured.append(probabilities)

    fused_flags = [(m, m.fused_attn) for m in fused]
    with explanation_mode(model, inputs.device) as handles:
        try:
            for module in fused:
                module.fused_attn = False
            handles.extend(m.register_forward_hook(keep) for m in hooked)
            logits = check_logits(model(inputs.detach()))
            targets = select_targets(logits.detach(), target)
            score = logits.sum() if targets is None else logits.gather(1, targets[:, None]).sum()
            grads = torch.autograd.grad(score, captured)
        finally:
            for module, flag in fused_flags:
                module.fused_attn = flag
    return _rollout([a.detach() for a in captured], [g.detach() for g in grads], inputs.shape[-2:], drop_tokens, grid)


def _probabilities(output: object) -> Tensor | None:
    """The output itself, or the first 4-D tensor of a tuple output."""
    if isinstance(output, Tensor):
        return output if output.ndim == 4 else None
    if isinstance(output, (tuple, list)):
        return next((t for t in output if isinstance(t, Tensor) and t.ndim == 4), None)
    return None


def _rollout(
    attentions: Sequence[Tensor],
    grads: Sequence[Tensor],
    size: torch.Size,
    drop_tokens: int,
    grid: tuple[int, int] | None,
) -> Tensor:
    """``R <- R + mean_h((grad * A)^+) @ R`` from ``R = I``; the first token's row over the patches, upsampled."""
    n, _, tokens, _ = attentions[0].shape
    relevance = torch.eye(tokens, device=attentions[0].device, dtype=torch.float32).expand(n, tokens, tokens)
    for attention, grad in zip(attentions, grads, strict=True):
        relevance = relevance + (grad.float() * attention.float()).clamp(min=0).mean(dim=1) @ relevance
    row = relevance[:, 0, drop_tokens:]
    count = row.shape[1]
    if grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"{count} patch tokens are not a square grid; pass grid=(h, w).")
        grid = (side, side)
    if grid[0] * grid[1] != count:
        raise ValueError(f"grid={tuple(grid)} holds {grid[0] * grid[1]} tokens, but there are {count}.")
    heat = row.reshape(n, 1, *grid)
    return F.interpolate(heat, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
