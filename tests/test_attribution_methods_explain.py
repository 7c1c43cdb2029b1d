"""``explain`` with all nine methods: shared passes, equality with each function, options, feature maps."""

from __future__ import annotations

import pytest
import torch
from method_calls import CNN_HEATMAP_METHODS, CNN_METHODS, call_method
from torch import Tensor, nn
from toy_models import MLP, ResidualCNN, warm_batchnorm

from lightning_explain.attribution import (
    METHOD_OPTIONS,
    compute_explanation,
    explain,
    feature_maps,
)
from lightning_explain.core import gradients as _pass

N, H, W = 4, 16, 16
OPTIONS = {
    "integrated_gradients": {"steps": 6, "method": "riemann_trapezoid"},
    "smoothgrad": {"samples": 3, "noise": 0.1, "seed": 7},
    "occlusion": {"window": 6, "stride": 3},
}


@pytest.fixture
def residual() -> tuple[ResidualCNN, Tensor]:
    torch.manual_seed(5)
    model = ResidualCNN(in_channels=3, num_classes=5)
    warm_batchnorm(model, torch.randn(8, 3, H, W))
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0]).view(N, 1, 1, 1)
    shift = torch.tensor([-2.0, -0.5, 1.0, 3.0]).view(N, 1, 1, 1)
    return model.eval(), torch.randn(N, 3, H, W) * scale + shift


def options_for(methods) -> dict:
    """Options may only name requested methods."""
    return {name: OPTIONS[name] for name in methods if name in OPTIONS}


@pytest.fixture
def counts(monkeypatch):
    """Count ``torch.autograd.grad`` calls (every backward pass of the library goes through ``_pass``)."""
    assert _pass.torch is torch
    seen = {"grad": 0}
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        seen["grad"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(_pass.torch.autograd, "grad", counting_grad)
    return seen


def test_explain_equals_each_method_on_its_own(residual):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    maps = explain(model, x, target=target, layer="block", methods=CNN_METHODS, options=OPTIONS)
    assert list(maps) == list(CNN_METHODS)
    expected = {
        name: call_method(name, model, x, target, layer="block", fast=False, **OPTIONS.get(name, {}))
        for name in CNN_METHODS
    }
    for name, value in maps.items():
        assert value.dtype == torch.float32
        assert value.shape == ((N, 8, H, W) if name == "feature_maps" else (N, H, W)), name
        assert value.abs().max() > 0, name
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_target_none_means_the_class_predicted_for_the_clean_inputs(residual):
    model, x = residual
    with torch.no_grad():
        argmax = model(x).argmax(dim=1)
    assert len(argmax.unique()) > 1
    by_none = explain(model, x, methods=CNN_HEATMAP_METHODS, options=options_for(CNN_METHODS))
    by_tensor = explain(model, x, target=argmax, methods=CNN_HEATMAP_METHODS, options=options_for(CNN_METHODS))
    for name in by_none:
        torch.testing.assert_close(by_none[name], by_tensor[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    ("methods", "backward_passes"),
    [
        (("saliency", "grad_cam", "grad_cam_pp", "feature_maps"), 1),  # one shared pass
        (("guided_backprop",), 1),
        (("guided_backprop", "guided_grad_cam", "grad_cam"), 2),  # the plain pass and one guided pass
        (("feature_maps",), 0),  # a forward pass is enough
        (("occlusion",), 0),
    ],
)
def test_methods_share_passes(residual, counts, methods, backward_passes):
    model, x = residual
    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))
    try:
        explain(model, x, target=1, layer="conv", methods=methods, options=options_for(methods))
    finally:
        handle.remove()
    assert counts["grad"] == backward_passes
    if "occlusion" not in methods:
        assert forwards == [N] * max(1, backward_passes)


def test_multi_pass_methods_run_their_own_batched_passes(residual, counts):
    model, x = residual
    options = {"integrated_gradients": {"steps": 8, "chunk_size": 16}, "smoothgrad": {"samples": 4, "chunk_size": 8}}
    explain(model, x, target=1, methods=("integrated_gradients", "smoothgrad"), options=options)
    assert counts["grad"] == 8 // 4 + 4 // 2


def test_compute_explanation_returns_the_layer_activation(residual):
    model, x = residual
    explanation = compute_explanation(model, x, layer="conv", methods=("grad_cam", "feature_maps"))
    assert list(explanation.maps) == ["grad_cam"]
    assert explanation.layer_name == "conv"
    torch.testing.assert_close(explanation.activation, feature_maps(model, x, layer="conv"), rtol=0, atol=0)
    assert compute_explanation(model, x, layer="conv", methods=("grad_cam",)).activation is None


def test_feature_maps_are_the_layers_outputs_before_in_place_ops(residual):
    model, x = residual
    stored: dict[str, Tensor] = {}
    hooks = [
        model.conv.register_forward_hook(lambda m, a, out: stored.__setitem__("conv", out.clone())),
        model.stem.register_forward_hook(lambda m, a, out: stored.__setitem__("stem", out.clone())),
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    maps = feature_maps(model, x, layer=["conv", model.stem])
    assert list(maps) == ["conv", "stem"]
    torch.testing.assert_close(maps["conv"], stored["conv"], rtol=0, atol=0)
    torch.testing.assert_close(maps["stem"], stored["stem"], rtol=0, atol=0)
    assert maps["conv"].min() < 0, "conv is followed by ReLU(inplace=True): its own output has negative values"
    assert feature_maps(model, x, layer="relu").min() == 0
    torch.testing.assert_close(feature_maps(model, x), feature_maps(model, x, layer="relu"))  # automatic layer


def test_feature_maps_of_a_layer_called_twice_raise():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: Tensor) -> Tensor:
            return self.conv(self.conv(x)).mean(dim=(1, 2, 3))

    with pytest.raises(ValueError, match="2 times"):
        feature_maps(Twice(), torch.randn(2, 1, 8, 8), layer="conv")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"integrated_gradients": {"samples": 3}}, "steps"),  # lists the options it does take
        (
            {"grad_cam": {"reduce": "sum"}},
            r"takes no option\(s\) \[.reduce.\]; its options: \[.layout., .drop_tokens., .grid.\]",
        ),
        ({"gradcam": {}}, "valid choices"),
        ({"occlusion": {"window": 4}}, "not in methods"),
        ({"guided_backprop": {"reduce": "mean"}}, "max_abs"),
        ({"smoothgrad": 3}, "dict"),
    ],
)
def test_bad_options_raise(residual, options, fragment):
    model, x = residual
    with pytest.raises(ValueError, match=fragment):
        explain(model, x, methods=("saliency", "grad_cam", "guided_backprop", "integrated_gradients", "smoothgrad"),
                options=options)  # fmt: skip


def test_method_options_name_each_functions_keywords():
    assert METHOD_OPTIONS["integrated_gradients"] == ("baseline", "steps", "method", "chunk_size", "reduce")
    assert METHOD_OPTIONS["smoothgrad"] == ("samples", "noise", "seed", "chunk_size", "reduce")
    assert METHOD_OPTIONS["occlusion"] == ("window", "stride", "baseline", "chunk_size", "reduce")
    assert METHOD_OPTIONS["saliency"] == ("reduce",)
    assert METHOD_OPTIONS["guided_grad_cam"] == ("reduce", "layout", "drop_tokens", "grid")
    assert METHOD_OPTIONS["grad_cam"] == METHOD_OPTIONS["grad_cam_pp"] == ("layout", "drop_tokens", "grid")


def test_layer_methods_on_non_image_inputs_name_themselves():
    model, x = MLP(in_features=16).eval(), torch.randn(N, 16)
    with pytest.raises(ValueError, match=r"\['feature_maps', 'grad_cam_pp'\] map a layer back onto images"):
        explain(model, x, methods=("saliency", "feature_maps", "grad_cam_pp"))
    maps = explain(model, x, methods=("saliency", "guided_backprop", "integrated_gradients", "smoothgrad"))
    assert all(value.shape == (N, 16) for value in maps.values())
