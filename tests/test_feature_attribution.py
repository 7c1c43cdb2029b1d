"""feature_saliency for tabular and sequence inputs; token_grad_cam for ViT-style token layers."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import nn
from toy_models import MLP, TinyViT, assert_model_unchanged, assert_no_hooks, snapshot_model

from lightning_explain.attribution.feature_attribution import feature_saliency, token_grad_cam, tokens_to_grid


class PatchSum(nn.Module):
    """Non-negative patch embedding (no bias) -> a mean token in front -> ``tokens`` -> linear head on the mean.

    An input that is zero except in one patch activates only that patch's token.
    """

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 4, 4, stride=4, bias=False)
        self.tokens = nn.Identity()
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.patch.weight.abs_()
            self.head.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) if x.ndim == 4 else x
        t = self.tokens(torch.cat([t.mean(1, keepdim=True), t], dim=1))
        return self.head(t[:, 1:].mean(1))


@pytest.fixture
def images():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_feature_saliency_equals_captum_on_tabular_inputs():
    torch.manual_seed(0)
    model = MLP(in_features=10, hidden=8, num_classes=3)
    x = torch.randn(6, 10)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
    assert torch.allclose(feature_saliency(model, x, target), expected, atol=1e-6)
    assert feature_saliency(model, x).shape == (6, 10)


def test_feature_saliency_of_a_linear_model_is_the_weight_magnitude():
    linear = nn.Linear(5, 2)
    x = torch.randn(3, 5)
    assert torch.allclose(feature_saliency(linear, x, 1), linear.weight[1].abs().expand(3, 5))


def test_sequences_reduce_the_feature_dimension_by_its_maximum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(7 * 3, 4))
    x = torch.randn(2, 7, 3)
    grads = Saliency(model).attribute(x.clone().requires_grad_(), target=2, abs=True)
    maps = feature_saliency(model, x, 2)
    assert maps.shape == (2, 7) and torch.allclose(maps, grads.amax(2))
    univariate = nn.Sequential(nn.Linear(7, 4))
    assert feature_saliency(univariate, torch.randn(2, 7)).shape == (2, 7)


def test_feature_saliency_leaves_the_model_as_found():
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.Linear(5, 2)).train()
    model(torch.randn(8, 6))
    snapshot = snapshot_model(model)
    x = torch.randn(4, 6)
    rng = torch.random.get_rng_state()
    with torch.inference_mode():
        feature_saliency(model, x)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert_model_unchanged(model, snapshot)
    assert_no_hooks(model)


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 2, 3, 3, 3)])
def test_feature_saliency_rejects_images(shape):
    with pytest.raises(ValueError, match=r"tabular inputs \(N, F\) or sequences"):
        feature_saliency(nn.Flatten(), torch.randn(shape))


def test_feature_saliency_rejects_integer_inputs():
    with pytest.raises(ValueError, match="floating-point"):
        feature_saliency(nn.Embedding(5, 2), torch.zeros(2, 3, dtype=torch.long))


def test_token_grad_cam_is_the_grad_cam_formula_on_the_patch_grid(images):
    torch.manual_seed(0)
    model = TinyViT().train()
    snapshot = snapshot_model(model)
    maps = token_grad_cam(model, images, "block", target=1)
    assert maps.shape == (4, 16, 16) and maps.dtype == torch.float32
    assert_model_unchanged(model, snapshot)
    assert_no_hooks(model)
    # reference: the block's output and gradient by hand, in eval mode
    model.eval()
    captured = []
    handle = model.block.register_forward_hook(lambda m, a, o: captured.append(o))
    logits = model(images)
    handle.remove()
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), captured[0])
    activation = captured[0].detach()[:, 1:].reshape(4, 4, 4, 8).permute(0, 3, 1, 2)
    grad = grad[:, 1:].reshape(4, 4, 4, 8).permute(0, 3, 1, 2)
    cam = (grad.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True).relu()
    expected = torch.nn.functional.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(maps, expected, atol=1e-6)


def test_token_grad_cam_puts_each_token_at_its_grid_position():
    model = PatchSum()
    images = torch.zeros(2, 3, 16, 16)
    images[0, :, 4:8, 8:12] = 1.0  # patch 6: grid row 1, column 2
    images[1, :, 12:16, 0:4] = 1.0  # patch 12: grid row 3, column 0
    for maps in (
        token_grad_cam(model, images, model.tokens, target=0),
        token_grad_cam(model, images, "tokens", grid=(4, 4)),
    ):
        assert maps.shape == (2, 16, 16)
        assert maps[0, 4:8, 8:12].min() > 0 and maps[0, :2].max() == 0 and maps[0, :, :6].max() == 0
        assert maps[1, 12:16, 0:4].min() > 0 and maps[1, :10].max() == 0
    embedded = model.patch(images).flatten(2).transpose(1, 2).detach()  # non-image inputs: maps at grid size
    small = token_grad_cam(model, embedded, "tokens", target=0)
    assert small.shape == (2, 4, 4)
    assert small.flatten(1).argmax(1).tolist() == [6, 12] and (small > 0).sum().item() == 2


def test_tokens_to_grid_and_errors():
    tokens = torch.arange(2 * 7 * 3).reshape(2, 7, 3)
    grid = tokens_to_grid(tokens, (2, 3), drop_tokens=1)
    assert grid.shape == (2, 3, 2, 3) and torch.equal(grid[0, :, 0, 1], tokens[0, 2])
    with pytest.raises(ValueError, match="not a square grid"):
        tokens_to_grid(tokens, None, drop_tokens=0)
    with pytest.raises(ValueError, match="holds 4 tokens"):
        tokens_to_grid(tokens, (2, 2), drop_tokens=1)
    with pytest.raises(ValueError, match=r"tokens \(N, T, D\)"):
        tokens_to_grid(torch.zeros(2, 3, 4, 4), None, 1)


def test_token_grad_cam_argument_errors(images):
    model = TinyViT()
    with pytest.raises(ValueError, match="needs layer="):
        token_grad_cam(model, images, None)
    with pytest.raises(ValueError, match="drop_tokens"):
        token_grad_cam(model, images, "block", drop_tokens=-1)
    with pytest.raises(ValueError, match=r"tokens \(N, T, D\)"):
        token_grad_cam(model, images, "patch")


def test_the_grad_cam_methods_read_a_token_layer_through_the_token_options(images):
    from lightning_explain.attribution import compute_explanation, explain

    torch.manual_seed(0)
    model = TinyViT().eval()
    token_options = {"drop_tokens": 1}
    maps = explain(
        model,
        images,
        target=1,
        layer="block",
        methods=("grad_cam", "grad_cam_pp", "guided_grad_cam"),
        options={m: token_options for m in ("grad_cam", "grad_cam_pp", "guided_grad_cam")},
    )
    torch.testing.assert_close(maps["grad_cam"], token_grad_cam(model, images, "block", target=1))
    assert maps["grad_cam_pp"].shape == maps["guided_grad_cam"].shape == (4, 16, 16)
    # Left unset, the layout is detected: 17 tokens of a 16x16 input = 1 CLS token + a 4x4 patch grid.
    detected = compute_explanation(model, images, target=1, layer="block", methods=("grad_cam",))
    torch.testing.assert_close(detected.maps["grad_cam"], maps["grad_cam"])
    assert (detected.layout.kind, detected.layout.prefix_tokens, detected.layout.grid) == ("tokens", 1, (4, 4))
    with pytest.raises(ValueError, match=r"tokens \(4, 17, 8\).*cannot be decided.*'drop_tokens'"):
        explain(model, images, layer="block", methods=("grad_cam",), options={"grad_cam": {"drop_tokens": 3}})
    with pytest.raises(ValueError, match="drop_tokens.*int >= 0"):
        explain(model, images, layer="block", methods=("grad_cam",), options={"grad_cam": {"drop_tokens": -1}})
