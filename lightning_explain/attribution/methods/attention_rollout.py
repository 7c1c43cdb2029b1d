"""Gradient-weighted attention rollout (Chefer, Gur and Wolf, 2021) for vision transformers.

The method of "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers" (ICCV 2021), for a ViT classifier: with ``A_b`` the attention probabilities of block ``b``
(N, heads, T, T) and ``S`` the target's score,

    R = I;  for each block b in forward order:  R <- R + mean_heads((dS/dA_b * A_b).clamp(min=0)) @ R

and the map is the CLS token's row of ``R`` over the patch tokens, reshaped to the patch grid and upsampled
bilinearly to the input (as Grad-CAM is). One forward pass records every block's probabilities and one
``autograd.grad`` call differentiates the score with respect to all of them.

Where the probabilities come from (:func:`~lightning_explain.core.attention.find_attention`): a Hugging Face ViT
with eager attention (the attention module's ``attn_weights``; SDPA and flash return none, and are refused with
the fix), a timm ViT / DeiT / register model (``attn_drop``'s output, with ``fused_attn`` switched off for the
call and restored). torchvision's ``nn.MultiheadAttention`` exposes no probabilities inside the graph
(``NotImplementedError``). The prefix tokens (CLS, distillation, registers) and the patch grid come from
:func:`~lightning_explain.core.layout.detect_layout` (timm's ``num_prefix_tokens``, else inferred from the token
count and the input's aspect ratio); ``drop_tokens=`` / ``grid=`` override it.

Measured: ``benchmarks/RESULTS.md`` section 8 (pointing game 0.92 on a trained Hugging Face ViT, where Grad-CAM
at the last block scores 0.40).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain.attribution.engine import explain_one
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.attention import attention_probabilities, find_attention, unfused
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.layout import check_layout_options, detect_layout
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


def attention_rollout(
    model: nn.Module,
    inputs: Tensor,
    target: TargetSpec = None,
    *,
    drop_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
    output: OutputSpec = None,
) -> Tensor:
    """Gradient-weighted attention rollout (Chefer et al., 2021): (N, H, W) float32 at input resolution.

    ``R = I; R <- R + mean_heads((dS/dA_b * A_b)^+) @ R`` over the blocks ``b`` in order, ``A_b`` the block's
    attention probabilities; the map is the CLS row of ``R`` over the patch tokens, on the patch grid, upsampled
    bilinearly. One forward and one backward pass, in eval mode with gradients enabled (also under ``no_grad`` /
    ``inference_mode``); modes, ``fused_attn`` flags and hooks restored, parameters' ``.grad`` untouched.

    Args:
        model: a ViT-style classifier: a Hugging Face ViT with ``attn_implementation="eager"`` (its ModelOutput is
            read through ``output``) or a timm ViT / DeiT / register model.
        inputs: images (N, C, H, W).
        target: ``None`` = the predicted class, an ``int``, a LongTensor (N,) or a callable ``(output) -> (N,)``.
        drop_tokens: the leading non-patch tokens (CLS, distillation, registers); ``None`` = detected (timm's
            ``num_prefix_tokens``, else inferred). The first token's row is read, so there must be one.
        grid: the patch grid ``(h, w)``; ``None`` = detected from the token count and the input's aspect ratio.
        output: which tensor of the model's output to explain: ``None`` = logits as returned, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, index or callable (see
            :func:`~lightning_explain.attribution.explain`).

    Raises:
        ValueError: a model without recognised attention (this method is for ViT-style models), a Hugging Face
            model with SDPA / flash attention (use ``attn_implementation="eager"``), or tokens without a grid.
        NotImplementedError: torchvision's ``VisionTransformer`` (``nn.MultiheadAttention``).

    Example:
        >>> vit = ViTForImageClassification(ViTConfig(..., attn_implementation="eager"))  # doctest: +SKIP
        >>> maps = attention_rollout(vit, images, target=labels)  # (N, H, W)  # doctest: +SKIP
    """
    options = {"drop_tokens": drop_tokens, "grid": grid}
    return explain_one("attention_rollout", model, inputs, target, options=options, output=output)


def attention_rollout_from_targets(
    context: MethodContext, drop_tokens: int | None, grid: tuple[int, int] | None
) -> Tensor:
    """The rollout for the targets the engine resolved: its own forward pass and one backward pass."""
    model, inputs, target = context.model, context.inputs, context.target
    sites = find_attention(model, "attention_rollout")
    captured: list[Tensor] = []

    def keep(module: nn.Module, args: object, out: object) -> None:
        probabilities = attention_probabilities(out)
        if probabilities is None:
            raise ValueError(
                f"attention_rollout: {type(module).__name__} returned no attention probabilities; for a Hugging "
                'Face model use attn_implementation="eager".'
            )
        captured.append(probabilities)

    with explanation_mode(model, inputs.device) as handles, unfused(sites):
        handles.extend(m.register_forward_hook(keep) for m in sites.hooked)
        logits = target.select(model(inputs.detach().clone()))
        score = target.scores(logits).sum()
        _check_captured(captured, inputs.shape[0])
        if not score.requires_grad:
            raise ValueError(
                "The model's output does not depend on anything that can be differentiated: "
                "check that forward does not detach its output or run under torch.no_grad()."
            )
        grads = torch.autograd.grad(score, captured, allow_unused=True)
    attentions = [a.detach().float() for a in captured]
    grads = [torch.zeros_like(a) if g is None else g.detach().float() for a, g in zip(attentions, grads, strict=True)]
    n, _, tokens, _ = attentions[0].shape
    layout = detect_layout(
        model,
        (n, tokens, tokens),
        tuple(inputs.shape),
        layout="tokens",
        drop_tokens=drop_tokens,
        grid=grid,
        name="attention_rollout's attention",
    )
    if layout.prefix_tokens == 0:
        raise ValueError(
            "attention_rollout reads the class token's row, and this model's tokens have no prefix token (a model "
            "pooling over the patches); pass drop_tokens=1 if its first token is a class token."
        )
    return _rollout(attentions, grads, layout.prefix_tokens, layout.grid, context.size)


def _check_captured(captured: list[Tensor], n: int) -> None:
    if not captured:
        raise ValueError("attention_rollout: no attention module ran in the forward pass.")
    shapes = {tuple(a.shape) for a in captured}
    first = captured[0].shape
    if len(shapes) != 1 or first[0] != n or first[2] != first[3]:
        raise ValueError(
            "attention_rollout needs every block's self-attention over the same tokens, (N, heads, T, T) with "
            f"N = {n}; got shapes {sorted(shapes)} (windowed attention, as in Swin, has no global rollout)."
        )


def _rollout(
    attentions: list[Tensor], grads: list[Tensor], prefix: int, grid: tuple[int, int], size: tuple[int, ...]
) -> Tensor:
    """``R <- R + mean_h((grad * A)^+) @ R`` from ``R = I``; the first token's row over the patches, upsampled."""
    n, _, tokens, _ = attentions[0].shape
    relevance = torch.eye(tokens, device=attentions[0].device, dtype=torch.float32).expand(n, tokens, tokens)
    for attention, grad in zip(attentions, grads, strict=True):
        relevance = relevance + (grad * attention).clamp(min=0).mean(dim=1) @ relevance
    heat = relevance[:, 0, prefix:].reshape(n, 1, *grid)
    return F.interpolate(heat, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def _check_options(drop_tokens: object, grid: object) -> None:
    check_layout_options(None, drop_tokens, grid)


SPEC = register(
    MethodSpec(
        name="attention_rollout",
        summary="the class token's gradient-weighted attention rolled out over the blocks (Chefer et al., 2021)",
        compute=attention_rollout_from_targets,
        needs_images=True,
        images_reason="maps a vision transformer's patch tokens back onto images",
        needs_attention=True,
        defaults={"drop_tokens": None, "grid": None},
        check=_check_options,
    )
)
