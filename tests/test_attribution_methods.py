"""The seed methods against their references: Captum, the Grad-CAM++ closed form, and their axioms.

- ``guided_backprop``: Captum ``GuidedBackprop``; ``guided_grad_cam``: that times ``LayerGradCam``
  upsampled bilinearly; ``integrated_gradients``: Captum ``IntegratedGradients`` with the same
  quadrature rule, and completeness; ``occlusion``: Captum ``Occlusion`` exactly; ``grad_cam_pp``:
  the paper's closed form written out with loops (pytorch-grad-cam needs torchvision, which is not
  importable here); ``smoothgrad``: ``noise=0`` is ``saliency``, the noise level's definition
  through an analytic expectation, and variance reduction.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, Occlusion, Saliency
from method_calls import REDUCIBLE_METHODS, caller
from torch import Tensor, nn
from toy_models import ResidualCNN, SingleScoreCNN, TinyCNN, warm_batchnorm

from lightning_explain.attribution import (
    grad_cam,
    grad_cam_pp,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)

N, H, W = 4, 16, 16
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")  # Captum's GuidedBackprop


def assert_maps_close(actual: Tensor, expected: Tensor, rtol: float = 1e-5) -> None:
    """Equal up to ``rtol`` relative to the map's scale; the expected map must not be all zero."""
    scale = expected.detach().abs().max().item()
    assert scale > 0, "reference map is all zero: the comparison would prove nothing"
    assert actual.shape == expected.shape
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected.float(), rtol=rtol, atol=rtol * scale)


def leaf(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_(True)


def predicted(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def target_score(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).gather(1, target[:, None])[:, 0]


@pytest.fixture
def residual() -> tuple[ResidualCNN, Tensor]:
    """A warmed-up ResidualCNN (BatchNorm, in-place and functional ReLUs) in eval mode, a batch (4, 3, 16, 16)."""
    torch.manual_seed(5)
    model = ResidualCNN(in_channels=3, num_classes=5)
    warm_batchnorm(model, torch.randn(8, 3, H, W))
    model.eval()
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0]).view(N, 1, 1, 1)
    shift = torch.tensor([-2.0, -0.5, 1.0, 3.0]).view(N, 1, 1, 1)
    x = torch.randn(N, 3, H, W) * scale + shift
    assert len(predicted(model, x).unique()) > 1, "precondition: the samples should predict different classes"
    return model, x


@pytest.fixture
def tiny() -> tuple[TinyCNN, Tensor]:
    torch.manual_seed(5)
    return TinyCNN(in_channels=1, num_classes=3).eval(), torch.randn(N, 1, H, W)


TARGET_KINDS = ["none", "int", "tensor"]


def make_target(kind: str, model: nn.Module, x: Tensor):
    """The value passed to the library, and the explicit (N,) tensor it stands for."""
    if kind == "none":
        return None, predicted(model, x)
    if kind == "int":
        return 2, torch.full((x.shape[0],), 2, dtype=torch.long)
    per_sample = torch.tensor([4, 0, 3, 1])
    return per_sample, per_sample


# --------------------------------------------------------------------------- saliency reductions
@pytest.mark.parametrize("reduce", [None, "sum", "sum_abs", "max_abs"])
def test_saliency_reductions_match_captum(residual, reduce):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    signed = Saliency(model).attribute(leaf(x), target=target, abs=False)
    expected = {
        None: signed,
        "sum": signed.sum(1),
        "sum_abs": signed.abs().sum(1),
        "max_abs": signed.abs().amax(1),
    }[reduce]
    assert_maps_close(saliency(model, x, target, reduce=reduce), expected)


# --------------------------------------------------------------------------- guided backprop


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_guided_backprop_matches_captum(residual, kind):
    model, x = residual
    target, explicit = make_target(kind, model, x)
    expected = GuidedBackprop(model).attribute(leaf(x), target=explicit)
    per_channel = guided_backprop(model, x, target=target, reduce=None)
    assert_maps_close(per_channel, expected)
    assert_maps_close(guided_backprop(model, x, target=target), expected.abs().amax(dim=1))
    # ... and it is not the plain gradient (the ReLU hooks did something).
    assert not torch.allclose(guided_backprop(model, x, target=target), saliency(model, x, target=target))


def test_guided_backprop_keeps_the_users_relu_modules(residual):
    model, x = residual
    relus = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    assert [name for name, _ in relus] == ["stem.2", "block.relu", "relu"] and all(m.inplace for _, m in relus)
    guided_backprop(model, x, target=1)
    assert [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ReLU)] == relus
    assert all(module.inplace for _, module in relus)


class FunctionalReluCNN(nn.Module):
    """A CNN whose only ReLUs are functional: guided backprop has nothing to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


def test_guided_backprop_without_relu_modules_warns_and_is_the_plain_gradient():
    torch.manual_seed(0)
    model = FunctionalReluCNN().eval()
    x = torch.randn(N, 1, 8, 8)
    with pytest.warns(UserWarning, match="no nn.ReLU module"):
        ours = guided_backprop(model, x, target=1, reduce=None)
    with torch.enable_grad():
        xx = leaf(x)
        (plain,) = torch.autograd.grad(model(xx)[:, 1].sum(), xx)
    assert_maps_close(ours, plain)
    assert_maps_close(ours, GuidedBackprop(model).attribute(leaf(x), target=1))  # Captum cannot hook it either


# --------------------------------------------------------------------------- guided Grad-CAM


def captum_grad_cam(model: nn.Module, x: Tensor, target, layer: nn.Module) -> Tensor:
    cam = LayerGradCam(model, layer).attribute(leaf(x), target=target, relu_attributions=True)
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("layer", ["block", "relu", "stem.1"])
def test_guided_grad_cam_is_guided_backprop_times_grad_cam(residual, layer):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    expected = GuidedBackprop(model).attribute(leaf(x), target=target) * captum_grad_cam(
        model, x, target, model.get_submodule(layer)
    )
    assert_maps_close(guided_grad_cam(model, x, target=target, layer=layer, reduce=None), expected)
    assert_maps_close(guided_grad_cam(model, x, target=target, layer=layer), expected.abs().amax(dim=1))


# --------------------------------------------------------------------------- Grad-CAM++


def reference_grad_cam_pp(model: nn.Module, x: Tensor, target: Tensor, layer: nn.Module) -> Tensor:
    """Chattopadhyay et al. (2018), eq. 19 with exp(S)'s higher derivatives as powers of g, by loops.

    ``eps`` in the denominator and zero ``alpha`` where ``g == 0`` as in pytorch-grad-cam's
    ``GradCAMPlusPlus`` (gradients of the raw target logit there too). Only for layers not
    followed by an in-place op (the stored output is the one used downstream).
    """
    stored: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, out: stored.append(out))
    try:
        logits = model(leaf(x))
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), stored[0])
    activations, grads = stored[0].detach().double(), grads.double()
    n, k = activations.shape[:2]
    cams = torch.zeros(n, 1, *activations.shape[2:], dtype=torch.float64)
    for i in range(n):
        for c in range(k):
            a, g = activations[i, c], grads[i, c]
            alpha = g**2 / (2 * g**2 + a.sum() * g**3 + 1e-6)
            alpha[g == 0] = 0
            weight = (alpha * torch.clamp(g, min=0)).sum()
            cams[i, 0] += weight * a
    cams = cams.clamp(min=0)
    return F.interpolate(cams, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def min_max(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    low, high = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    return (maps - low) / (high - low)


@pytest.mark.parametrize(("which", "layer"), [("residual", "block"), ("residual", "stem"), ("tiny", "features.2")])
def test_grad_cam_pp_matches_the_closed_form(request, which, layer):
    model, x = request.getfixturevalue(which)
    target = torch.tensor([1, 0, 2, 1])
    expected = reference_grad_cam_pp(model, x, target, model.get_submodule(layer))
    ours = grad_cam_pp(model, x, target=target, layer=layer)
    assert ours.shape == (N, H, W)
    assert_maps_close(ours, expected, rtol=1e-4)
    assert_maps_close(min_max(ours), min_max(expected), rtol=1e-4)  # what pytorch-grad-cam shows
    # ... and it is not Grad-CAM.
    assert not torch.allclose(min_max(ours), min_max(grad_cam(model, x, target=target, layer=layer)), atol=1e-2)


# --------------------------------------------------------------------------- integrated gradients


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_integrated_gradients_matches_captum(residual, rule):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    expected = IntegratedGradients(model).attribute(leaf(x), target=target, n_steps=12, method=rule)
    ours = integrated_gradients(model, x, target=target, steps=12, method=rule, reduce=None, chunk_size=20)
    assert_maps_close(ours, expected)
    assert_maps_close(integrated_gradients(model, x, target=target, steps=12, method=rule), expected.abs().amax(1))


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_integrated_gradients_targets_and_a_tensor_baseline(residual, kind):
    model, x = residual
    target, explicit = make_target(kind, model, x)
    baseline = torch.linspace(-1, 1, 3 * H * W).view(3, H, W)
    expected = IntegratedGradients(model).attribute(leaf(x), baselines=baseline[None], target=explicit, n_steps=8)
    ours = integrated_gradients(model, x, target=target, baseline=baseline, steps=8, reduce=None)
    assert_maps_close(ours, expected)


def test_integrated_gradients_completeness_within_3_percent_at_64_steps(residual):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    for baseline in (None, 0.5):
        total = integrated_gradients(model, x, target, baseline, steps=64, reduce="sum").sum(dim=(1, 2))
        start = torch.zeros_like(x) if baseline is None else torch.full_like(x, baseline)
        difference = target_score(model, x, target) - target_score(model, start, target)
        assert difference.abs().min() > 1e-3, "precondition: S(x) and S(baseline) differ"
        assert ((total - difference).abs() / difference.abs()).max() < 0.03


def test_integrated_gradients_chunks_do_not_change_the_result(residual):
    model, x = residual
    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))
    try:
        chunked = integrated_gradients(model, x, target=1, steps=10, chunk_size=9, reduce=None)
        assert forwards == [N] + [8] * 5  # the targets, then two copies of the batch per pass
        forwards.clear()
        whole = integrated_gradients(model, x, target=1, steps=10, chunk_size=1000, reduce=None)
        assert forwards == [N, 10 * N]
    finally:
        handle.remove()
    assert_maps_close(chunked, whole)


# --------------------------------------------------------------------------- SmoothGrad


def test_smoothgrad_without_noise_is_saliency(residual):
    model, x = residual
    for target in (None, torch.tensor([4, 0, 3, 1])):
        torch.testing.assert_close(smoothgrad(model, x, target=target, noise=0.0), saliency(model, x, target))
    # The mean is over signed gradients (reduce=None keeps the sign), as in Smilkov et al.
    target = torch.tensor([4, 0, 3, 1])
    with torch.enable_grad():
        xx = leaf(x)
        (gradient,) = torch.autograd.grad(model(xx).gather(1, target[:, None]).sum(), xx)
    assert gradient.min() < 0
    assert_maps_close(smoothgrad(model, x, target=target, noise=0.0, reduce=None), gradient)


class Cubic(nn.Module):
    """``S(x) = sum(w * x^3)``: ``dS/dx = 3 w x^2``, so ``E[dS/dx(x + e)] = 3 w (x^2 + sigma^2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return (self.w * x**3).flatten(1).sum(dim=1)


def test_smoothgrad_noise_is_a_fraction_of_each_inputs_range():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16) * torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    spread = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    mean_grad = smoothgrad(Cubic(), x, samples=64, noise=0.2, reduce=None, chunk_size=32)
    variance = (mean_grad / 1.5 - x**2).flatten(1).mean(dim=1)  # estimates sigma^2 per sample
    torch.testing.assert_close(variance, (0.2 * spread) ** 2, rtol=0.1, atol=0)


def test_smoothgrad_is_seeded_batched_and_reduces_variance(residual):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    one = smoothgrad(model, x, target, samples=6, seed=3, chunk_size=4)
    torch.testing.assert_close(one, smoothgrad(model, x, target, samples=6, seed=3, chunk_size=1000))
    assert not torch.allclose(one, smoothgrad(model, x, target, samples=6, seed=4))

    def spread_over_seeds(samples: int) -> float:
        runs = torch.stack([smoothgrad(model, x, target, samples=samples, seed=s, reduce=None) for s in range(4)])
        return runs.var(dim=0).mean().item()

    assert spread_over_seeds(16) < 0.5 * spread_over_seeds(2)  # ~1/8 in expectation


# --------------------------------------------------------------------------- occlusion


@pytest.mark.parametrize(
    ("window", "stride", "baseline"),
    [(4, 2, 0.0), (5, 4, 0.3), ((3, 5), (2, 4), 0.0), (16, 1, -1.0), (4, None, "tensor")],
    ids=["4-2", "5-4-cut-at-the-edge", "non-square", "whole-image", "tensor-baseline"],
)
def test_occlusion_matches_captum(residual, window, stride, baseline):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    if baseline == "tensor":
        baseline = torch.linspace(-1, 1, 3 * H * W).view(3, H, W)
    hw = (window, window) if isinstance(window, int) else window
    step = stride or (hw[0] // 2, hw[1] // 2)
    step = (step, step) if isinstance(step, int) else step
    expected = Occlusion(model).attribute(
        x.clone(), target=target, sliding_window_shapes=(3, *hw), strides=(3, *step), baselines=baseline
    )
    ours = occlusion(model, x, target=target, window=window, stride=stride, baseline=baseline, reduce=None)
    assert_maps_close(ours, expected)
    assert_maps_close(occlusion(model, x, target, window, stride, baseline), expected.abs().amax(dim=1))


def test_occlusion_runs_batched_forward_passes_only(residual, monkeypatch):
    model, x = residual
    grads_enabled: list[bool] = []
    sizes: list[int] = []

    def record(module, args):
        grads_enabled.append(torch.is_grad_enabled())
        sizes.append(args[0].shape[0])

    def no_backward(*args, **kwargs):
        raise AssertionError("occlusion ran a backward pass")

    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    monkeypatch.setattr(torch.autograd, "backward", no_backward)
    handle = model.register_forward_pre_hook(record)
    try:
        chunked = occlusion(model, x, target=2, window=8, stride=4, chunk_size=16, reduce=None)  # 9 windows
        whole = occlusion(model, x, target=2, window=8, stride=4, chunk_size=1000, reduce=None)
    finally:
        handle.remove()
    assert sizes == [N, 16, 16, 4] + [N, 9 * N]  # the targets, then 4 + 4 + 1 windows of the batch
    assert not any(grads_enabled)
    assert_maps_close(chunked, whole)


# --------------------------------------------------------------------------- shared conventions

# Every registered method with a channel reduction, through its own function (a new one joins by registering).
INPUT_SPACE = {name: caller(name, layer="net.features") for name in REDUCIBLE_METHODS}


@pytest.mark.parametrize("method", INPUT_SPACE)
def test_reductions_and_single_output_models(method):
    torch.manual_seed(1)
    model = SingleScoreCNN(in_channels=2).eval()
    x = torch.randn(N, 2, 8, 8)
    run = INPUT_SPACE[method]
    per_channel = run(model, x, None, reduce=None)
    assert per_channel.shape == (N, 2, 8, 8) and per_channel.dtype == torch.float32
    assert per_channel.abs().max() > 0
    torch.testing.assert_close(run(model, x, None), per_channel.abs().amax(dim=1))  # saliency's reduction
    torch.testing.assert_close(run(model, x, None, reduce="sum"), per_channel.sum(dim=1))
    torch.testing.assert_close(run(model, x, None, reduce="sum_abs"), per_channel.abs().sum(dim=1))
    with pytest.raises(ValueError, match="max_abs"):
        run(model, x, None, reduce="mean")
    with pytest.raises(ValueError, match="target"):
        run(model, x, 1)


def test_float64_model_gives_float32_maps(residual):
    model, x = residual
    model64, x64 = copy.deepcopy(model).double(), x.double()
    target = torch.tensor([4, 0, 3, 1])
    expected = IntegratedGradients(model64).attribute(leaf(x64), target=target, n_steps=6)
    assert_maps_close(integrated_gradients(model64, x64, target, steps=6, reduce=None), expected)
    for value in (
        grad_cam_pp(model64, x64, target),
        guided_backprop(model64, x64, target),
        occlusion(model64, x64, target, window=8),
        smoothgrad(model64, x64, target, samples=2),
    ):
        assert value.shape == (N, H, W) and value.dtype == torch.float32


BAD_ARGUMENTS = {
    "ig-steps": (lambda m, x: integrated_gradients(m, x, steps=1), "steps"),
    "ig-rule": (lambda m, x: integrated_gradients(m, x, method="simpson"), "gausslegendre"),
    "ig-baseline-shape": (lambda m, x: integrated_gradients(m, x, baseline=torch.zeros(2, 3)), "baseline"),
    "ig-chunk": (lambda m, x: integrated_gradients(m, x, chunk_size=0), "chunk_size"),
    "ig-integers": (lambda m, x: integrated_gradients(m, x.long()), "floating-point"),
    "sg-noise": (lambda m, x: smoothgrad(m, x, noise=-0.1), "noise"),
    "sg-samples": (lambda m, x: smoothgrad(m, x, samples=0), "samples"),
    "occ-window": (lambda m, x: occlusion(m, x, window=17), "smaller window"),
    "occ-stride": (lambda m, x: occlusion(m, x, window=4, stride=5), "stride"),
    "occ-flat-input": (lambda m, x: occlusion(m, x.flatten(1)), "images"),
    "gcpp-flat-input": (lambda m, x: grad_cam_pp(m, x.flatten(1)), "images"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_errors_that_name_the_fix(residual, case):
    model, x = residual
    call, fragment = BAD_ARGUMENTS[case]
    with pytest.raises(ValueError, match=fragment):
        call(model, x)
