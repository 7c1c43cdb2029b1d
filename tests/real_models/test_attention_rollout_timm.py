"""attention_rollout on timm's ViT, DeiT (distilled: two prefix tokens) and a register model, against the
rollout's definition computed step by step here on timm's explicit attention path (``fused_attn=False``).

The reference switches every ``Attention.fused_attn`` off itself, hooks ``attn_drop`` (the probabilities, the
identity in eval mode), differentiates the target's logit with respect to them, and rolls out per sample and
head; ours gets the model with its flags as timm set them, and must leave them so.
"""

import pytest
import torch
import torch.nn.functional as F

from lightning_explain.attribution import attention_rollout

pytestmark = pytest.mark.real_models
timm = pytest.importorskip("timm")

CASES = {
    # name: (create_model kwargs, prefix tokens)
    "vit": ({"class_token": True}, 1),
    "deit_distilled": ({}, 2),
    "vit_registers": ({"reg_tokens": 2}, 3),
}


def build(case: str) -> torch.nn.Module:
    kwargs, _ = CASES[case]
    common = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 4}
    if case == "deit_distilled":
        from timm.models.deit import VisionTransformerDistilled

        model = VisionTransformerDistilled(**common).eval()
    else:
        from timm.models.vision_transformer import VisionTransformer

        model = VisionTransformer(**common, **kwargs).eval()
    for module in model.modules():  # the fused (SDPA) path, whatever TIMM_FUSED_ATTN says: ours must switch it off
        if hasattr(module, "fused_attn"):
            module.fused_attn = True
    return model


def step_by_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, prefix: int) -> torch.Tensor:
    attention = [m for m in model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]
    flags = [m.fused_attn for m in attention]
    kept = []
    handles = [m.attn_drop.register_forward_hook(lambda mod, args, out: kept.append(out)) for m in attention]
    try:
        for m in attention:
            m.fused_attn = False
        logits = model(x)
    finally:
        for m, flag in zip(attention, flags, strict=True):
            m.fused_attn = flag
        for handle in handles:
            handle.remove()
    if isinstance(logits, tuple):  # a distilled model in train mode; eval mode averages the heads
        logits = logits[0]
    score = sum(logits[i, int(target[i])] for i in range(len(x)))
    grads = torch.autograd.grad(score, kept)
    maps = []
    for i in range(len(x)):
        tokens = kept[0].shape[-1]
        relevance = torch.eye(tokens)
        for a, g in zip(kept, grads, strict=True):
            heads = a.shape[1]
            relevance = relevance + sum((g[i, h] * a[i, h]).clamp(min=0) for h in range(heads)) / heads @ relevance
        side = int((tokens - prefix) ** 0.5)
        heat = relevance[0, prefix:].reshape(1, 1, side, side)
        maps.append(F.interpolate(heat, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(maps).detach()


@pytest.mark.parametrize("case", sorted(CASES))
def test_timm_rollout_matches_the_step_by_step_definition(case):
    model = build(case)
    _, prefix = CASES[case]
    assert model.num_prefix_tokens == prefix
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(flags) == 2 and all(flags)
    x = torch.randn(3, 3, 32, 32)
    target = torch.tensor([0, 3, 1])
    expected = step_by_step(model, x, target, prefix)
    actual = attention_rollout(model, x, target)
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == flags
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * scale)
    # 16 patches and a prefix: the grid comes from num_prefix_tokens; the options say the same
    torch.testing.assert_close(attention_rollout(model, x, target, drop_tokens=prefix, grid=(4, 4)), actual)


def test_timm_fused_flags_are_restored_when_the_forward_raises():
    model = build("vit")
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]

    def fail(module, args, out):
        raise RuntimeError("head failed")

    handle = model.head.register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="head failed"):
            attention_rollout(model, torch.randn(2, 3, 32, 32), 1)
        assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == flags
        assert all(len(m.attn_drop._forward_hooks) == 0 for m in model.modules() if hasattr(m, "fused_attn"))
    finally:
        handle.remove()
