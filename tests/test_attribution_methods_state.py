"""The seed methods leave the model, the input and the global RNG exactly as found.

The same contract as ``test_attribution_model_state.py``, for every method added with them:
training flags, BatchNorm statistics, parameters, ``.grad``, hooks, ``nn.ReLU(inplace=...)``,
the input's values and ``requires_grad``, and the global RNG, also under ``torch.no_grad()`` /
``torch.inference_mode()`` and when the forward pass raises.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from method_calls import ATTENTION_METHODS, CNN_METHODS, caller
from torch import Tensor, nn
from toy_models import BrokenCNN, assert_model_unchanged, assert_no_hooks, snapshot_model
from vit_models import BrokenViT

from lightning_explain.attribution import (
    explain,
    feature_maps,
    grad_cam_pp,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    occlusion,
    smoothgrad,
)

N, H, W = 4, 16, 16

CHUNKED = {name: {"chunk_size": 5} for name in ("integrated_gradients", "smoothgrad", "occlusion")}
CALLS = {
    # every registered method through its own function, then variants that exercise more paths
    **{
        name: (lambda call: lambda model, x: call(model, x, 1))(caller(name, layer="conv", **CHUNKED.get(name, {})))
        for name in CNN_METHODS
        if name != "feature_maps"
    },
    "grad_cam_pp-target": lambda model, x: grad_cam_pp(model, x, target=1),
    "grad_cam_pp-block": lambda model, x: grad_cam_pp(model, x, layer="block"),
    "guided_backprop-default": lambda model, x: guided_backprop(model, x),
    "guided_grad_cam-per-channel": lambda model, x: guided_grad_cam(model, x, target=1, layer="conv", reduce=None),
    "integrated_gradients-predicted": lambda model, x: integrated_gradients(model, x, steps=4, chunk_size=5),
    "smoothgrad-tensor-target": lambda model, x: smoothgrad(
        model, x, target=torch.tensor([0, 1, 2, 3]), samples=3, chunk_size=5
    ),
    "occlusion-predicted": lambda model, x: occlusion(model, x, window=8, chunk_size=5),
    "feature_maps-two-layers": lambda model, x: feature_maps(model, x, layer=["stem.1", "conv"]),
    "explain-all": lambda model, x: explain(
        model, x, methods=CNN_METHODS, options={"integrated_gradients": {"steps": 2}, "smoothgrad": {"samples": 2}}
    ),
}


@pytest.fixture
def inputs() -> Tensor:
    torch.manual_seed(1)
    return torch.randn(N, 3, H, W)


def _relu_flags(model: nn.Module) -> list[tuple[str, bool]]:
    return [(name, m.inplace) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("call", CALLS)
def test_model_left_exactly_as_found(mixed_model, inputs, call, context):
    model = mixed_model
    grad_before = model.fc.weight.grad
    snap = snapshot_model(model)
    relus = _relu_flags(model)
    ctx = {"plain": contextlib.nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[context]
    with ctx():
        result = CALLS[call](model, inputs.clone())
    assert model.training and model.dropout.training and not model.block.training
    assert_model_unchanged(model, snap)
    assert model.fc.weight.grad is grad_before
    assert model.conv.weight.grad is None
    assert_no_hooks(model)
    assert _relu_flags(model) == relus
    values = result.values() if isinstance(result, dict) else [result]
    assert all(value.dtype == torch.float32 and not value.requires_grad for value in values)


# The methods that read attention, on the small Hugging Face ViT (the toy CNNs have none): the same contract.
VIT_CALLS = {
    **{name: (lambda call: lambda model, x: call(model, x, 1))(caller(name)) for name in ATTENTION_METHODS},
    **{f"{name}-predicted": (lambda call: lambda model, x: call(model, x))(caller(name)) for name in ATTENTION_METHODS},
    "explain-vit": lambda model, x: explain(model, x, methods=(*ATTENTION_METHODS, "saliency", "grad_cam")),
}


def _mixed(request, kind: str):
    """The calls of one model kind and its mixed-mode model (CNN methods on the CNN, attention methods on a ViT)."""
    calls, fixture = {"cnn": (CALLS, "mixed_model"), "vit": (VIT_CALLS, "mixed_vit")}[kind]
    return calls, request.getfixturevalue(fixture)


MIXED_CASES = [("cnn", call) for call in CALLS] + [("vit", call) for call in VIT_CALLS]


@pytest.mark.parametrize(("kind", "call"), MIXED_CASES)
def test_results_do_not_depend_on_the_models_mode(request, inputs, kind, call):
    calls, model = _mixed(request, kind)
    from_train = calls[call](model, inputs)
    model.eval()
    from_eval = calls[call](model, inputs)
    if isinstance(from_train, dict):
        assert from_train.keys() == from_eval.keys()
        from_train, from_eval = list(from_train.values()), list(from_eval.values())
    else:
        from_train, from_eval = [from_train], [from_eval]
    for a, b in zip(from_train, from_eval, strict=True):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize(("kind", "call"), MIXED_CASES)
def test_input_and_global_rng_left_as_found(request, inputs, kind, call, requires_grad):
    calls, model = _mixed(request, kind)
    x = inputs.clone().requires_grad_(requires_grad)
    state = torch.random.get_rng_state()
    calls[call](model, x)  # dropout is in train mode: a train-mode forward would draw
    assert torch.equal(torch.random.get_rng_state(), state)
    assert x.requires_grad is requires_grad and x.is_leaf and x.grad is None
    assert torch.equal(x.detach(), inputs)


FAILING_CALLS = {
    "grad_cam_pp": lambda model, x: grad_cam_pp(model, x, layer="features.2"),
    "guided_backprop": lambda model, x: guided_backprop(model, x),
    "guided_grad_cam-per-channel": lambda model, x: guided_grad_cam(model, x, layer="features"),
    "integrated_gradients-predicted": lambda model, x: integrated_gradients(model, x, steps=2),
    "smoothgrad-tensor-target": lambda model, x: smoothgrad(model, x, samples=2),
    "occlusion-predicted": lambda model, x: occlusion(model, x, window=8),
    "feature_maps-two-layers": lambda model, x: feature_maps(model, x, layer="features.2"),
    "explain-all": lambda model, x: explain(model, x, layer="features", methods=CNN_METHODS),
}


@pytest.mark.parametrize("call", FAILING_CALLS)
def test_model_restored_when_forward_raises(call):
    torch.manual_seed(0)
    model = BrokenCNN(in_channels=1, num_classes=3)
    model.train()
    model.features[2].eval()
    snap = snapshot_model(model)
    x = torch.randn(N, 1, H, W)
    with pytest.raises(RuntimeError, match=BrokenCNN.message):
        FAILING_CALLS[call](model, x)
    assert model.training and model.features.training and not model.features[2].training
    assert_model_unchanged(model, snap)
    assert_no_hooks(model)


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("call", VIT_CALLS)
def test_vit_left_exactly_as_found(mixed_vit, inputs, call, context):
    model = mixed_vit
    head, patches = model.vit.classifier, model.vit.vit.embeddings.patch_embeddings.projection
    grads_before = head.weight.grad, patches.weight.grad
    snap = snapshot_model(model)
    ctx = {"plain": contextlib.nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[context]
    with ctx():
        result = VIT_CALLS[call](model, inputs.clone())
    assert model.training and model.vit.vit.layers[1].training and not model.vit.vit.layers[0].training
    assert_model_unchanged(model, snap)
    assert (head.weight.grad, patches.weight.grad) == grads_before
    assert model.vit.vit.layers[0].attention.q_proj.weight.grad is None
    assert_no_hooks(model)
    values = result.values() if isinstance(result, dict) else [result]
    assert all(value.dtype == torch.float32 and not value.requires_grad for value in values)


@pytest.mark.parametrize("fail_at", [1, 2])  # the engine's forward that fixes the target, the method's own
@pytest.mark.parametrize("call", VIT_CALLS)
def test_vit_restored_when_forward_raises(call, fail_at):
    torch.manual_seed(0)
    model = BrokenViT(fail_at=fail_at)
    model.train()
    model.vit.vit.layers[0].eval()
    snap = snapshot_model(model)
    with pytest.raises(RuntimeError, match=BrokenViT.message):
        VIT_CALLS[call](model, torch.randn(N, 3, H, W))
    assert model.training and model.vit.vit.layers[1].training and not model.vit.vit.layers[0].training
    assert_model_unchanged(model, snap)
    assert_no_hooks(model)
