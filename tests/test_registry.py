"""The method registry: every registered method honours the contract, and adding one is one module + one register."""

from __future__ import annotations

import inspect

import pytest
import torch
from captum.attr import InputXGradient
from method_calls import FAST_OPTIONS, HEATMAP_METHODS, REDUCIBLE_METHODS, call_method, model_fixture, public_function
from toy_models import ResidualCNN, assert_model_unchanged, assert_no_hooks, snapshot_model, warm_batchnorm

import lightning_explain.attribution as attribution
from lightning_explain.attribution import METHOD_OPTIONS, METHODS, MethodSpec, explain, get_spec, registered
from lightning_explain.attribution import registry as registry_module
from lightning_explain.attribution._reduce import reduce_channels
from lightning_explain.core import gradients as gradients_module

N, H, W = 4, 16, 16

# Every method must name where its math is checked against a reference: a library's output (Captum,
# pytorch-grad-cam) or a published closed form. The test functions named here must exist, so a new method
# cannot be registered without one.
REFERENCE_TESTS = {
    "saliency": "test_attribution_methods.py::test_saliency_reductions_match_captum",
    "grad_cam": "test_attribution.py::test_grad_cam_matches_captum",
    "grad_cam_pp": "test_attribution_methods.py::test_grad_cam_pp_matches_the_closed_form",
    "gradient_x_input": "test_registry.py::test_gradient_x_input_matches_captum",
    "guided_backprop": "test_attribution_methods.py::test_guided_backprop_matches_captum",
    "guided_grad_cam": "test_attribution_methods.py::test_guided_grad_cam_is_guided_backprop_times_grad_cam",
    "integrated_gradients": "test_attribution_methods.py::test_integrated_gradients_matches_captum",
    "smoothgrad": "test_attribution_methods.py::test_smoothgrad_without_noise_is_saliency",
    "occlusion": "test_attribution_methods.py::test_occlusion_matches_captum",
    "feature_maps": "test_attribution_methods_explain.py::test_feature_maps_are_the_layers_outputs_before_in_place_ops",
    "attention_rollout": "test_attention_rollout.py::test_attention_rollout_matches_the_step_by_step_definition",
}


@pytest.fixture
def residual():
    torch.manual_seed(5)
    model = ResidualCNN(in_channels=3, num_classes=5)
    warm_batchnorm(model, torch.randn(8, 3, H, W))
    return model.eval(), torch.randn(N, 3, H, W)


def test_every_method_names_a_reference_test_that_exists(request):
    assert set(REFERENCE_TESTS) == set(METHODS), "add the new method's reference test to REFERENCE_TESTS"
    for method, node in REFERENCE_TESTS.items():
        filename, function = node.split("::")
        source = (request.path.parent / filename).read_text()
        assert f"def {function}(" in source, f"{method}: {node} does not exist"


@pytest.mark.parametrize("name", METHODS)
def test_every_method_has_a_documented_public_function_exported_by_attribution(name):
    function = public_function(name)
    assert getattr(attribution, name) is function
    assert name in attribution.__all__
    assert function.__doc__ and "Example" in function.__doc__
    spec = get_spec(name)
    assert spec.summary and spec.name == name
    assert METHOD_OPTIONS[name] == tuple(spec.defaults)
    # The public function's keyword defaults are the registry's, so explain(options=...) and the function agree.
    parameters = inspect.signature(function).parameters
    for option, default in spec.defaults.items():
        if option in parameters:
            assert parameters[option].default == default, (name, option)


def test_methods_lists_heatmaps_first_and_the_registry_order():
    assert METHODS == tuple(spec.name for spec in registered())
    assert METHODS[-1] == "feature_maps"
    assert set(HEATMAP_METHODS) == set(METHODS) - {"feature_maps"}


@pytest.mark.parametrize("name", METHODS)
def test_every_method_leaves_the_model_exactly_as_found(request, name):
    model, x = request.getfixturevalue(model_fixture(name, "residual"))
    before = snapshot_model(model.train())
    result = call_method(name, model, x, layer="block")
    assert result.dtype == torch.float32 and result.shape[0] == N
    assert torch.isfinite(result).all() and result.abs().max() > 0
    assert_model_unchanged(model, before)
    assert_no_hooks(model)


@pytest.mark.parametrize("name", HEATMAP_METHODS)
def test_every_heatmap_method_explains_the_predicted_class_by_default(request, name):
    model, x = request.getfixturevalue(model_fixture(name, "residual"))
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    by_default = call_method(name, model, x, layer="block")
    torch.testing.assert_close(by_default, call_method(name, model, x, predicted, layer="block"), rtol=0, atol=0)
    other = call_method(name, model, x, (predicted + 1) % 5, layer="block")
    assert not torch.equal(by_default, other)


@pytest.mark.parametrize("name", REDUCIBLE_METHODS)
def test_every_reduce_option_is_the_shared_channel_reduction(residual, name):
    model, x = residual
    per_channel = call_method(name, model, x, 2, layer="block", reduce=None)
    assert per_channel.shape == (N, 3, H, W)
    for reduce in ("max_abs", "sum", "sum_abs"):
        reduced = call_method(name, model, x, 2, layer="block", reduce=reduce)
        torch.testing.assert_close(reduced, reduce_channels(per_channel, reduce), msg=f"{name} reduce={reduce}")


@pytest.mark.parametrize("reduce", [None, "sum", "max_abs"])
def test_gradient_x_input_matches_captum(residual, reduce):
    model, x = residual
    target = torch.tensor([4, 0, 3, 1])
    expected = InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target).detach()
    actual = attribution.gradient_x_input(model, x, target, reduce=reduce)
    expected = reduce_channels(expected, reduce)
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * scale)


@pytest.fixture
def backward_passes(monkeypatch):
    seen = {"grad": 0}
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        seen["grad"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(gradients_module.torch.autograd, "grad", counting_grad)
    return seen


def test_gradient_x_input_shares_the_plain_pass(residual, backward_passes):
    model, x = residual
    maps = explain(model, x, layer="block", methods=("saliency", "grad_cam", "gradient_x_input"))
    assert backward_passes["grad"] == 1
    torch.testing.assert_close(maps["gradient_x_input"], attribution.gradient_x_input(model, x))


def test_a_method_registered_at_run_time_reaches_explain_and_shares_the_plain_pass(
    residual, backward_passes, monkeypatch
):
    model, x = residual
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))  # removed after the test
    spec = registry_module.register(
        MethodSpec(
            name="negative_gradient",
            summary="minus the input gradient, summed over channels",
            compute=lambda context, scale: -scale * context.plain.input_grad.float().sum(dim=1),
            passes=frozenset({"plain"}),
            input_grad=True,
            needs_float=True,
            defaults={"scale": 1.0},
        )
    )
    assert get_spec("negative_gradient") is spec
    maps = explain(model, x, methods=("saliency", "negative_gradient"), options={"negative_gradient": {"scale": 2.0}})
    assert backward_passes["grad"] == 1
    signed = attribution.saliency(model, x, reduce=None)
    torch.testing.assert_close(maps["negative_gradient"], -2.0 * signed.sum(dim=1))
    with pytest.raises(
        ValueError, match=r"negative_gradient takes no option\(s\) \['scal'\]; its options: \['scale'\]"
    ):
        explain(model, x, methods=("negative_gradient",), options={"negative_gradient": {"scal": 2.0}})


def test_registering_a_name_twice_is_refused(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    duplicate = MethodSpec(name="saliency", summary="again", compute=lambda context: context.inputs)
    with pytest.raises(ValueError, match="'saliency' is already registered"):
        registry_module.register(duplicate)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"passes": frozenset({"plain", "backward"})}, r"unknown shared pass\(es\) \['backward'\]"),
        ({"input_grad": True}, "input_grad=True reads the plain pass"),
        ({"output": "tokens"}, "output must be 'map' or 'activation'"),
    ],
)
def test_an_inconsistent_spec_is_refused_when_it_is_written(fields, message):
    with pytest.raises(ValueError, match=message):
        MethodSpec(name="broken", summary="broken", compute=lambda context: context.inputs, **fields)


def test_an_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="Unknown method 'lrp'") as info:
        get_spec("lrp")
    for name in METHODS:
        assert name in str(info.value)


def test_fast_options_only_name_registered_methods_and_their_options():
    for name, options in FAST_OPTIONS.items():
        assert set(options) <= set(get_spec(name).defaults)
