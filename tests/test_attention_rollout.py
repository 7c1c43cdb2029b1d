"""attention_rollout: Chefer et al. (2021)'s gradient-weighted attention rollout, on a small Hugging Face ViT.

The reference is the definition computed step by step here, independently of the library: hooks on the Hugging
Face attention modules keep the probabilities, autograd differentiates the target's logit with respect to them,
then per sample ``R = I; R <- R + mean_heads((dS/dA * A)^+) @ R`` block by block, the CLS row over the patches,
the patch grid, bilinear upsampling. timm's path is checked against the same computation in
``tests/real_models/test_attention_rollout_timm.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, read_tensorboard, trainer
from PIL import Image
from torch import Tensor, nn
from toy_models import TinyViT, assert_model_unchanged, assert_no_hooks, snapshot_model
from vit_models import AttentionViT, diverse_images, vit_config

from lightning_explain import ExplainCallback
from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution import METHOD_OPTIONS, attention_rollout, explain, get_spec

N, H, W = 4, 16, 16


def hf_vit(classes: int = 5, channels: int = 3, image: int | tuple[int, int] = 16) -> nn.Module:
    """The raw Hugging Face model: its forward returns an ImageClassifierOutput (a ModelOutput)."""
    torch.manual_seed(2)
    return transformers.ViTForImageClassification(vit_config(classes, channels, image)).eval()


def step_by_step(model: nn.Module, x: Tensor, target: Tensor, grid: tuple[int, int]) -> Tensor:
    """The rollout by its definition, one sample, one block and one head at a time."""
    kept: list[Tensor] = []
    attention_type = transformers.models.vit.modeling_vit.ViTAttention
    blocks = [m for m in model.modules() if isinstance(m, attention_type)]
    handles = [b.register_forward_hook(lambda module, args, out: kept.append(out[1])) for b in blocks]
    try:
        model.eval()
        logits = model(pixel_values=x).logits
    finally:
        for handle in handles:
            handle.remove()
    assert len(kept) == len(blocks) == 2
    score = sum(logits[i, int(target[i])] for i in range(len(x)))
    grads = torch.autograd.grad(score, kept)
    maps = []
    for i in range(len(x)):
        tokens = kept[0].shape[-1]
        relevance = torch.eye(tokens)
        for attention, grad in zip(kept, grads, strict=True):
            heads = attention.shape[1]
            mixed = sum((grad[i, h] * attention[i, h]).clamp(min=0) for h in range(heads)) / heads
            relevance = relevance + mixed @ relevance
        row = relevance[0, 1:]  # the CLS token's row, over the patch tokens
        heat = row.reshape(1, 1, *grid)
        maps.append(F.interpolate(heat, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(maps).detach()


@pytest.fixture
def vit() -> nn.Module:
    return hf_vit()


@pytest.fixture
def x() -> Tensor:
    return diverse_images()


def test_attention_rollout_matches_the_step_by_step_definition(vit, x):
    target = torch.tensor([4, 0, 3, 1])
    expected = step_by_step(vit, x, target, (4, 4))
    actual = attention_rollout(vit, x, target)  # the raw model: its ModelOutput's logits are read
    assert actual.shape == (N, H, W) and actual.dtype == torch.float32
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * scale)
    # The gradient weighting matters: another class gives another map.
    assert not torch.allclose(attention_rollout(vit, x, 2), attention_rollout(vit, x, 3))


def test_a_grid_that_is_not_square_is_detected_and_can_be_given():
    model = hf_vit(image=(16, 8))  # 4 x 2 patches of 4 x 4
    x = diverse_images()[..., :8]
    target = torch.tensor([1, 1, 0, 2])
    expected = step_by_step(model, x, target, (4, 2))
    torch.testing.assert_close(attention_rollout(model, x, target), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(attention_rollout(model, x, target, drop_tokens=1, grid=(4, 2)), expected)
    with pytest.raises(ValueError, match=r"grid=\(3, 3\) holds 9 patches"):
        attention_rollout(model, x, target, drop_tokens=1, grid=(3, 3))
    with pytest.raises(ValueError, match="reads the class token's row"):
        attention_rollout(model, x, target, drop_tokens=0, grid=(3, 3))


def test_the_model_is_left_exactly_as_found(vit, x):
    vit.train()
    vit.vit.layers[1].eval()
    vit.classifier.weight.grad = torch.randn_like(vit.classifier.weight)
    grad = vit.classifier.weight.grad
    snap = snapshot_model(vit)
    state = torch.random.get_rng_state()
    attention_rollout(vit, x, 1)
    assert vit.training and vit.vit.layers[0].training and not vit.vit.layers[1].training
    assert_model_unchanged(vit, snap)
    assert vit.classifier.weight.grad is grad and vit.vit.layers[0].attention.q_proj.weight.grad is None
    assert_no_hooks(vit)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert vit.config._attn_implementation == "eager"


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_under_no_grad_and_inference_mode(vit, x, context):
    expected = attention_rollout(vit, x)
    with context():
        x_inner = x.clone()
        target = torch.tensor([4, 0, 3, 1])
        actual = attention_rollout(vit, x_inner)
        with_target = attention_rollout(vit, x_inner, target)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert not actual.requires_grad
    torch.testing.assert_close(with_target, attention_rollout(vit, x, torch.tensor([4, 0, 3, 1])))


class DictViT(nn.Module):
    """The Hugging Face ViT whose forward returns a plain dict of its logits and something else."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = self.vit(pixel_values=x)
        return {"hidden": out.logits * 0, "logits": out.logits}


def test_dict_and_model_output_outputs_read_their_logits(vit, x):
    wrapped = AttentionViT()
    wrapped.vit = vit  # the same weights behind a forward returning the logits tensor
    expected = attention_rollout(wrapped, x, 2)
    torch.testing.assert_close(attention_rollout(vit, x, 2), expected, rtol=0, atol=0)  # ModelOutput
    torch.testing.assert_close(attention_rollout(DictViT(vit), x, 2), expected, rtol=0, atol=0)  # dict
    by_key = attention_rollout(DictViT(vit), x, 2, output="logits")
    torch.testing.assert_close(by_key, expected, rtol=0, atol=0)


def test_every_target_kind(vit, x):
    with torch.no_grad():
        predicted = vit(pixel_values=x).logits.argmax(dim=1)
    by_none = attention_rollout(vit, x)
    torch.testing.assert_close(by_none, attention_rollout(vit, x, predicted), rtol=0, atol=0)
    by_int = attention_rollout(vit, x, 3)
    torch.testing.assert_close(by_int, attention_rollout(vit, x, torch.full((N,), 3)), rtol=0, atol=0)
    by_callable = attention_rollout(vit, x, lambda logits: logits[:, 3])
    torch.testing.assert_close(by_callable, by_int, rtol=0, atol=0)
    mixed = torch.tensor([4, 0, 3, 1])
    per_sample = torch.stack([attention_rollout(vit, x, int(t))[i] for i, t in enumerate(mixed)])
    torch.testing.assert_close(attention_rollout(vit, x, mixed), per_sample, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="target=5 is out of range"):
        attention_rollout(vit, x, 5)


def test_explain_shares_the_target_and_equals_the_method_alone(vit, x):
    maps = explain(vit, x, target=None, methods=("saliency", "attention_rollout", "grad_cam"))
    assert list(maps) == ["saliency", "attention_rollout", "grad_cam"]
    torch.testing.assert_close(maps["attention_rollout"], attention_rollout(vit, x), rtol=0, atol=0)


def test_the_spec_and_its_options():
    spec = get_spec("attention_rollout")
    assert spec.needs_attention and spec.needs_images and not spec.passes
    assert METHOD_OPTIONS["attention_rollout"] == ("drop_tokens", "grid")
    with pytest.raises(ValueError, match="drop_tokens"):
        explain(
            hf_vit(),
            diverse_images(),
            methods=("attention_rollout",),
            options={"attention_rollout": {"drop_tokens": -1}},
        )
    with pytest.raises(ValueError, match="grid"):
        attention_rollout(hf_vit(), diverse_images(), grid=(4,))


def test_models_without_recognised_attention_are_refused_with_the_reason(x):
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="attention_rollout is for ViT-style models"):
        attention_rollout(cnn, x)
    with pytest.raises(ValueError, match="attention_rollout is for ViT-style models"):
        explain(cnn, x, methods=("saliency", "attention_rollout"))
    with pytest.raises(NotImplementedError, match="nn.MultiheadAttention"):
        attention_rollout(TinyViT(classes=3), x)
    with pytest.raises(ValueError, match="inputs of shape"):
        attention_rollout(hf_vit(), torch.randn(N, 16))


def test_sdpa_attention_is_refused_naming_the_eager_attention(x):
    config = vit_config()
    config._attn_implementation = "sdpa"
    model = transformers.ViTForImageClassification(config).eval()
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match='attn_implementation="eager"'):
        attention_rollout(model, x)
    assert_no_hooks(model)


class TimmLikeAttention(nn.Module):
    """An attention module shaped like timm's ``Attention``: ``fused_attn`` picks SDPA or the explicit path,
    whose probabilities go through ``attn_drop`` before ``@ v``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.fused_attn = heads, True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(0.1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
            out = self.attn_drop(attn) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class TimmLikeViT(nn.Module):
    """Patches (4 x 4), a CLS token, two pre-norm attention blocks, a CLS head; declares ``num_prefix_tokens``."""

    num_prefix_tokens = 1

    def __init__(self, dim: int = 8, classes: int = 3, fail: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.blocks = nn.ModuleList([TimmLikeAttention(dim, 2), TimmLikeAttention(dim, 2)])
        self.head = nn.Linear(dim, classes)
        self.fail = fail

    def forward(self, x: Tensor) -> Tensor:
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.patch(x).flatten(2).transpose(1, 2)], dim=1)
        for norm, block in zip(self.norms, self.blocks, strict=True):
            tokens = tokens + block(norm(tokens))
        if self.fail and not self.blocks[0].fused_attn:
            raise RuntimeError("failed inside the rollout's forward")
        return self.head(tokens[:, 0])


def test_timm_style_attention_is_read_unfused_and_the_flags_are_restored(x):
    torch.manual_seed(0)
    model = TimmLikeViT().eval()
    model.blocks[1].fused_attn = False  # one flag already off: each is restored to its own value
    target = torch.tensor([0, 2, 1, 2])
    kept: list[Tensor] = []
    for block in model.blocks:
        block.fused_attn = False
    handles = [b.attn_drop.register_forward_hook(lambda m, args, out: kept.append(out)) for b in model.blocks]
    logits = model(x)
    for handle in handles:
        handle.remove()
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), kept)
    relevance = torch.eye(17).expand(N, 17, 17)
    for attention, grad in zip(kept, grads, strict=True):
        relevance = relevance + (grad * attention).clamp(min=0).mean(dim=1) @ relevance
    heat = relevance[:, 0, 1:].reshape(N, 1, 4, 4).detach()
    expected = F.interpolate(heat, size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    model.blocks[0].fused_attn, model.blocks[1].fused_attn = True, False
    torch.testing.assert_close(attention_rollout(model, x, target), expected, rtol=1e-5, atol=1e-7)
    assert (model.blocks[0].fused_attn, model.blocks[1].fused_attn) == (True, False)
    assert_no_hooks(model)

    broken = TimmLikeViT(fail=True).eval()
    with pytest.raises(RuntimeError, match="inside the rollout's forward"):
        attention_rollout(broken, x)
    assert broken.blocks[0].fused_attn and broken.blocks[1].fused_attn
    assert_no_hooks(broken)


# --------------------------------------------------------------------------- ExplainCallback


class LitHFViT(LightningModule):
    """The small Hugging Face ViT (1 channel, 12 x 12, 3 classes, eager attention); forward returns its
    ModelOutput."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.vit = transformers.ViTForImageClassification(vit_config(classes=3, channels=1, image=12))
        self.training_steps = 0

    def forward(self, x: Tensor):
        return self.vit(pixel_values=x)

    def training_step(self, batch, batch_idx):
        self.training_steps += 1
        x, y = batch
        return F.cross_entropy(self(x).logits, y)

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _fit(tmp_path, callback, model, logger=None):
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, [callback], logger=logger, max_epochs=1)
    run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return run


@pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")
def test_explain_callback_logs_the_rollout_and_grad_cam_of_a_hugging_face_vit(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(methods=("attention_rollout", "grad_cam"), probe_size=4)
    _fit(tmp_path, callback, LitHFViT(), logger)
    events = read_tensorboard(logger.log_dir)
    for method in ("attention_rollout", "grad_cam"):
        images = events.Images(f"explain/{method}")
        assert [e.step for e in images] == [0, 4], method
        picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 10, method
        assert [e.step for e in events.Scalars(f"explain/{method}/mean")] == [0, 4], method


@pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")
def test_a_cnn_is_refused_at_fit_start(tmp_path):
    model = LitCNN()
    callback = ExplainCallback(methods=("attention_rollout", "grad_cam"))
    with pytest.raises(MisconfigurationException, match="attention_rollout is for ViT-style models"):
        _fit(tmp_path, callback, model)
    assert model.training_steps == 0
