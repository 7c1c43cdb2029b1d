"""What the attribution functions compute: saliency, Grad-CAM, explain, targets and layers.

Reference values come from Captum (``Saliency`` and ``LayerGradCam``) and, for a few
cases, from a direct autograd computation of the formulas. Everything runs on CPU with
small models (see ``toy_models``) on 16x16 inputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, Saliency
from method_calls import HEATMAP_METHODS, call_method, model_fixture
from torch import Tensor, nn
from toy_models import MLP, ResidualCNN, SingleScoreCNN, TinyCNN, warm_batchnorm

from lightning_explain.attribution import GRADIENT_METHODS, explain, find_target_layer, grad_cam, saliency
from lightning_explain.core import gradients

N, H, W = 4, 16, 16
SEED = 5  # with this seed both toy models predict more than one class on the inputs below


# --------------------------------------------------------------------------- helpers


def _diverse_inputs(channels: int, height: int = H, width: int = W) -> Tensor:
    """A batch whose samples differ in scale and offset, so the models predict different classes."""
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0]).view(N, 1, 1, 1)
    shift = torch.tensor([-2.0, -0.5, 1.0, 3.0]).view(N, 1, 1, 1)
    return torch.randn(N, channels, height, width) * scale + shift


def assert_maps_close(actual: Tensor, expected: Tensor) -> None:
    """Equal up to 1e-5 relative to the map's scale; the expected map must not be all zero."""
    scale = expected.detach().abs().max().item()
    assert scale > 0, "reference map is all zero: the comparison would prove nothing"
    assert actual.shape == expected.shape
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected.float(), rtol=1e-5, atol=1e-5 * scale)


def captum_saliency(model: nn.Module, x: Tensor, target) -> Tensor:
    return Saliency(model).attribute(x.detach().clone().requires_grad_(True), target=target, abs=True).amax(1)


def captum_grad_cam(model: nn.Module, x: Tensor, target, layer: nn.Module) -> Tensor:
    cam = LayerGradCam(model, layer).attribute(
        x.detach().clone().requires_grad_(True), target=target, relu_attributions=True
    )
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def predicted(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


# Target kinds: the value passed to the library, and the explicit (N,) tensor it stands for.
TARGET_KINDS = ["none", "int", "tensor"]


def make_target(kind: str, model: nn.Module, x: Tensor):
    if kind == "none":
        return None, predicted(model, x)
    if kind == "int":
        return 2, torch.full((x.shape[0],), 2, dtype=torch.long)
    per_sample = torch.tensor([4, 0, 3, 1])[: x.shape[0]] % model.fc.out_features
    return per_sample, per_sample


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def residual() -> tuple[ResidualCNN, Tensor]:
    """A ResidualCNN with warmed-up BatchNorm statistics, in eval mode, and a batch (4, 3, 16, 16)."""
    torch.manual_seed(SEED)
    model = ResidualCNN(in_channels=3, num_classes=5)
    warm_batchnorm(model, torch.randn(8, 3, H, W))
    model.eval()
    x = _diverse_inputs(3)
    assert len(predicted(model, x).unique()) > 1, "precondition: the samples should predict different classes"
    return model, x


@pytest.fixture
def tiny() -> tuple[TinyCNN, Tensor]:
    """A TinyCNN in eval mode and a batch (4, 1, 16, 16)."""
    torch.manual_seed(SEED)
    model = TinyCNN(in_channels=1, num_classes=3).eval()
    x = _diverse_inputs(1)
    assert len(predicted(model, x).unique()) > 1, "precondition: the samples should predict different classes"
    return model, x


@pytest.fixture(params=["residual", "tiny"])
def any_model(request) -> tuple[nn.Module, Tensor]:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- saliency


@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_saliency_matches_captum(any_model, kind):
    model, x = any_model
    target, explicit = make_target(kind, model, x)
    ours = saliency(model, x, target=target)
    assert ours.shape == (N, H, W)
    assert not ours.requires_grad
    assert_maps_close(ours, captum_saliency(model, x, explicit))


def test_saliency_is_channel_max_of_abs_input_gradient(residual):
    """Computed by hand, one sample at a time: max_c |d logit_t / d x|."""
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    expected = []
    for i in range(N):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xi)[0, target[i]], xi)
        expected.append(grad.abs().amax(dim=1)[0])
    assert_maps_close(saliency(model, x, target=target), torch.stack(expected))


# --------------------------------------------------------------------------- grad_cam

# stem.1 / block.bn1: BatchNorm followed by ReLU(inplace=True); block: the residual block;
# conv: a conv followed by an nn.ReLU(inplace=True) module; relu: that in-place ReLU itself.
GRAD_CAM_LAYERS = ["stem.1", "stem", "block.bn1", "block", "conv", "relu"]


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("layer", GRAD_CAM_LAYERS)
def test_grad_cam_matches_captum(residual, layer, kind):
    model, x = residual
    target, explicit = make_target(kind, model, x)
    ours = grad_cam(model, x, target=target, layer=layer)
    assert ours.shape == (N, H, W)
    assert not ours.requires_grad
    assert_maps_close(ours, captum_grad_cam(model, x, explicit, model.get_submodule(layer)))


@pytest.mark.parametrize("layer", ["stem.1", "block", "conv"])
def test_grad_cam_layer_as_module_equals_layer_as_name(residual, layer):
    model, x = residual
    by_module = grad_cam(model, x, layer=model.get_submodule(layer))
    by_name = grad_cam(model, x, layer=layer)
    assert by_module.abs().max() > 0
    torch.testing.assert_close(by_module, by_name, rtol=0, atol=0)


def test_grad_cam_layer_before_in_place_relu_sees_pre_activation(residual):
    """``conv`` is followed by ReLU(inplace=True): its Grad-CAM must use the conv output, not the ReLU's."""
    model, x = residual
    at_conv = grad_cam(model, x, target=1, layer="conv")
    at_relu = grad_cam(model, x, target=1, layer="relu")
    assert not torch.allclose(at_conv, at_relu, rtol=1e-3, atol=0)
    assert_maps_close(at_conv, captum_grad_cam(model, x, 1, model.conv))


def test_grad_cam_formula_by_hand(tiny):
    """ReLU(sum_k mean_ij(dS/dA_k) A_k) at ``features.2``'s output, bilinear upsampling, no normalisation."""
    model, x = tiny
    target = torch.tensor([2, 0, 1, 2])
    stored: list[Tensor] = []
    handle = model.features[2].register_forward_hook(lambda m, a, out: stored.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    activation = stored[0]
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activation)
    cam = (grad.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True).relu()
    expected = F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False)[:, 0].detach()
    ours = grad_cam(model, x, target=target, layer="features.2")
    assert_maps_close(ours, expected)
    assert ours.max() != pytest.approx(1.0), "maps must not be normalised"


def test_grad_cam_upsamples_to_a_non_square_input(tiny):
    model, _ = tiny
    x = torch.randn(2, 1, 12, 20)
    ours = grad_cam(model, x, target=0, layer="features")
    assert ours.shape == (2, 12, 20)
    assert_maps_close(ours, captum_grad_cam(model, x, 0, model.features))


def test_find_target_layer_is_last_spatial_layer_before_pooling(residual, tiny):
    model, x = residual
    # ``pool`` outputs (N, 16, 1, 1): 4-D but not spatial; ``relu`` is the last spatial one.
    assert find_target_layer(model, x) == "relu"
    # In TinyCNN the Sequential ``features`` finishes after its children.
    assert find_target_layer(tiny[0], tiny[1]) == "features"


def test_grad_cam_default_layer_is_found_automatically(residual):
    model, x = residual
    automatic = grad_cam(model, x)
    assert_maps_close(automatic, grad_cam(model, x, layer="relu"))
    assert_maps_close(automatic, captum_grad_cam(model, x, predicted(model, x), model.relu))


# --------------------------------------------------------------------------- layer errors


@pytest.mark.parametrize("fn", [grad_cam, explain])
def test_unknown_layer_name_names_it_and_suggests_close_matches(residual, fn):
    model, x = residual
    with pytest.raises(ValueError, match="convv") as info:
        fn(model, x, layer="convv")
    assert "'conv'" in str(info.value)


@pytest.mark.parametrize("fn", [grad_cam, explain])
def test_layer_from_another_model_raises(residual, fn):
    model, x = residual
    stranger = ResidualCNN().conv
    with pytest.raises(ValueError, match="not a submodule"):
        fn(model, x, layer=stranger)


def test_model_without_spatial_layer_raises():
    torch.manual_seed(0)
    model = MLP(in_features=16).eval()
    x = torch.randn(N, 1, 4, 4)
    with pytest.raises(ValueError, match="spatial"):
        grad_cam(model, x)
    with pytest.raises(ValueError, match="spatial"):
        explain(model, x)
    with pytest.raises(ValueError, match="spatial"):
        find_target_layer(model, x)
    # Saliency needs no layer, so it still works on the same model.
    maps = explain(model, x, methods=("saliency",))
    assert set(maps) == {"saliency"}
    assert_maps_close(maps["saliency"], captum_saliency(model, x, predicted(model, x)))


# --------------------------------------------------------------------------- explain


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts how often a backward pass runs through it."""

    calls = 0

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        _CountBackward.calls += 1
        return grad


class _Counted(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return _CountBackward.apply(self.model(x))


@pytest.fixture
def count_passes(monkeypatch):
    """Count ``torch.autograd.grad`` calls made by ``core.gradients`` and fail on any ``torch.autograd.backward``."""
    # core/gradients.py calls ``torch.autograd.grad`` through the torch module it imported.
    assert gradients.torch is torch
    counts = {"grad": 0, "backward": 0}
    real_grad, real_backward = torch.autograd.grad, torch.autograd.backward

    def counting_grad(*args, **kwargs):
        counts["grad"] += 1
        return real_grad(*args, **kwargs)

    def counting_backward(*args, **kwargs):
        counts["backward"] += 1
        return real_backward(*args, **kwargs)

    monkeypatch.setattr(gradients.torch.autograd, "grad", counting_grad)
    monkeypatch.setattr(gradients.torch.autograd, "backward", counting_backward)
    return counts


def _count_forwards(model: nn.Module) -> tuple[list[int], object]:
    batch_sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    return batch_sizes, handle


@pytest.mark.parametrize("layer", ["model.conv", "model.block"])
def test_explain_runs_one_forward_and_one_backward(residual, count_passes, layer):
    model, x = residual
    counted = _Counted(model)
    forwards, handle = _count_forwards(counted)
    _CountBackward.calls = 0
    try:
        maps = explain(counted, x, target=torch.tensor([4, 0, 3, 1]), layer=layer)
    finally:
        handle.remove()
    assert set(maps) == set(GRADIENT_METHODS)
    assert forwards == [N]
    assert count_passes == {"grad": 1, "backward": 0}
    assert _CountBackward.calls == 1


def test_explain_with_automatic_layer_runs_one_full_forward(residual, count_passes):
    model, x = residual
    forwards, handle = _count_forwards(model)
    try:
        explain(model, x)
        # Finding the layer may probe the model with a single sample; the batch is run once.
        assert forwards.count(N) == 1
        assert count_passes == {"grad": 1, "backward": 0}
        forwards.clear()
        explain(model, x)  # the layer is known now: exactly one forward in all
        assert forwards == [N]
        assert count_passes == {"grad": 2, "backward": 0}
    finally:
        handle.remove()


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("layer", [None, "block", "stem.1"])
def test_explain_equals_individual_functions(residual, layer, kind):
    model, x = residual
    target, explicit = make_target(kind, model, x)
    maps = explain(model, x, target=target, layer=layer)
    assert set(maps) == {"saliency", "grad_cam"}
    for name, value in maps.items():
        assert value.shape == (N, H, W) and value.dtype == torch.float32, name
    assert_maps_close(maps["saliency"], saliency(model, x, target=target))
    assert_maps_close(maps["grad_cam"], grad_cam(model, x, target=target, layer=layer))
    assert_maps_close(maps["saliency"], captum_saliency(model, x, explicit))
    cam_layer = model.get_submodule(layer or "relu")
    assert_maps_close(maps["grad_cam"], captum_grad_cam(model, x, explicit, cam_layer))


@pytest.mark.parametrize("methods", [("saliency",), ("grad_cam",), ("grad_cam", "saliency")])
def test_explain_returns_exactly_the_requested_methods(residual, count_passes, methods):
    model, x = residual
    maps = explain(model, x, target=1, layer="conv", methods=methods)
    assert list(maps) == list(methods)
    assert count_passes["grad"] == 1
    if "saliency" in maps:
        assert_maps_close(maps["saliency"], saliency(model, x, target=1))
    if "grad_cam" in maps:
        assert_maps_close(maps["grad_cam"], grad_cam(model, x, target=1, layer="conv"))


@pytest.mark.parametrize("methods", [("saliency", "gradcam"), ("lrp",)])
def test_explain_unknown_method_lists_valid_choices(residual, methods):
    model, x = residual
    with pytest.raises(ValueError) as info:
        explain(model, x, methods=methods)
    message = str(info.value)
    assert methods[-1] in message
    for valid in GRADIENT_METHODS:
        assert valid in message


# --------------------------------------------------------------------------- targets


def _registered(name):
    return lambda model, x, target: call_method(name, model, x, target, layer="block")


# Every registered heatmap method through its own function (a new method joins by registering), and explain.
METHODS = {
    **{name: _registered(name) for name in HEATMAP_METHODS},
    "explain": lambda model, x, target: torch.stack(list(explain(model, x, target=target, layer="block").values())),
}


@pytest.mark.parametrize("method", METHODS)
def test_target_none_is_the_predicted_class(request, method):
    model, x = request.getfixturevalue(model_fixture(method, "residual"))
    run = METHODS[method]
    argmax = predicted(model, x)
    by_none = run(model, x, None)
    torch.testing.assert_close(by_none, run(model, x, argmax), rtol=0, atol=0)
    # ... and differs from explaining some other class (so the check above can fail).
    other = (argmax + 1) % 5
    assert not torch.allclose(by_none, run(model, x, other))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", [0, 3])
def test_target_int_equals_a_full_tensor(request, method, cls):
    model, x = request.getfixturevalue(model_fixture(method, "residual"))
    run = METHODS[method]
    by_int = run(model, x, cls)
    assert by_int.abs().max() > 0
    torch.testing.assert_close(by_int, run(model, x, torch.full((N,), cls, dtype=torch.long)), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_target_tensor_is_applied_per_sample(request, method):
    model, x = request.getfixturevalue(model_fixture(method, "residual"))
    run = METHODS[method]
    target = torch.tensor([4, 0, 3, 1])
    batched = run(model, x, target)
    one_by_one = torch.stack([run(model, x, int(t))[..., i, :, :] for i, t in enumerate(target)], dim=-3)
    assert_maps_close(batched, one_by_one)


BAD_TARGETS = {
    "int-too-large": 5,
    "int-negative": -1,
    "tensor-too-long": torch.tensor([0, 1, 2, 3, 4]),
    "tensor-too-short": torch.tensor([0]),
    "tensor-2d": torch.zeros(N, 1, dtype=torch.long),
    "tensor-out-of-range": torch.tensor([0, 1, 5, 2]),
    "tensor-negative": torch.tensor([0, -1, 2, 3]),
    "tensor-float": torch.tensor([0.0, 1.0, 2.0, 3.0]),
    "python-float": 1.0,
    "string": "cat",
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", BAD_TARGETS)
def test_invalid_target_raises_a_clear_error(request, method, bad):
    model, x = request.getfixturevalue(model_fixture(method, "residual"))
    with pytest.raises((ValueError, TypeError), match="(?i)target"):
        METHODS[method](model, x, BAD_TARGETS[bad])


# --------------------------------------------------------------------------- special models and dtypes


def test_single_output_model_with_target_none():
    torch.manual_seed(SEED)
    model = SingleScoreCNN(in_channels=1).eval()
    x = torch.randn(N, 1, H, W)
    assert model(x).shape == (N,)
    sal = saliency(model, x)
    cam = grad_cam(model, x, layer="net.features")
    maps = explain(model, x, layer="net.features")
    assert_maps_close(sal, captum_saliency(model, x, None))
    assert_maps_close(cam, captum_grad_cam(model, x, None, model.net.features))
    assert_maps_close(maps["saliency"], sal)
    assert_maps_close(maps["grad_cam"], cam)
    assert_maps_close(grad_cam(model, x), cam)  # automatic layer: net.features
    with pytest.raises(ValueError, match="target"):
        saliency(model, x, target=1)


def test_float64_model_gives_float32_maps(residual):
    model, x = residual
    model64, x64 = copy.deepcopy(model).double(), x.double()
    target = torch.tensor([4, 0, 3, 1])
    maps = explain(model64, x64, target=target, layer="block")
    sal = saliency(model64, x64, target=target)
    cam = grad_cam(model64, x64, target=target, layer="block")
    for value in (*maps.values(), sal, cam):
        assert value.dtype == torch.float32
    assert_maps_close(sal, captum_saliency(model64, x64, target))
    assert_maps_close(cam, captum_grad_cam(model64, x64, target, model64.block))
    assert_maps_close(maps["saliency"], sal)
    assert_maps_close(maps["grad_cam"], cam)


def test_works_under_no_grad(residual):
    model, x = residual
    expected = explain(model, x, target=2, layer="conv")
    with torch.no_grad():
        maps = explain(model, x, target=2, layer="conv")
        sal = saliency(model, x, target=2)
        cam = grad_cam(model, x, target=2, layer="conv")
    assert_maps_close(maps["saliency"], expected["saliency"])
    assert_maps_close(maps["grad_cam"], expected["grad_cam"])
    assert_maps_close(sal, expected["saliency"])
    assert_maps_close(cam, expected["grad_cam"])


def test_works_in_inference_mode_with_an_inference_tensor(residual):
    model, x = residual
    reference_model = copy.deepcopy(model)  # keeps the automatic-layer lookup of ``model`` cold
    expected = explain(reference_model, x)
    with torch.inference_mode():
        x_inf = x.clone()
        assert x_inf.is_inference()
        maps = explain(model, x_inf)  # layer=None: the layer is found inside inference_mode
        sal = saliency(model, x_inf)
        cam = grad_cam(model, x_inf, layer="relu")
    assert_maps_close(maps["saliency"], expected["saliency"])
    assert_maps_close(maps["grad_cam"], expected["grad_cam"])
    assert_maps_close(sal, expected["saliency"])
    assert_maps_close(cam, expected["grad_cam"])


# Regression: a target tensor created inside torch.inference_mode() -- e.g. the labels of a batch
# loaded there -- is an inference tensor, which autograd cannot save as the index of the
# ``logits.gather`` in the backward pass ("Inference tensors cannot be saved for backward").
@pytest.mark.parametrize("method", METHODS)
def test_works_in_inference_mode_with_an_inference_target_tensor(request, method):
    model, x = request.getfixturevalue(model_fixture(method, "residual"))
    target = torch.tensor([4, 0, 3, 1])
    expected = METHODS[method](model, x, target)
    with torch.inference_mode():
        x_inf, target_inf = x.clone(), target.clone()
        assert target_inf.is_inference()
        result = METHODS[method](model, x_inf, target_inf)
    assert_maps_close(result, expected)
