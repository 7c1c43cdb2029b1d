"""The attribution functions leave the model, the input and the global RNG exactly as found.

Checked after every public entry point, also when an exception escapes mid-pass and when
called under ``torch.no_grad()`` or ``torch.inference_mode()``: every module's training flag,
BatchNorm statistics, parameters, ``.grad``, hooks, the input's values and ``requires_grad``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import Tensor
from toy_models import (
    BrokenCNN,
    ResidualCNN,
    assert_model_unchanged,
    assert_no_hooks,
    snapshot_model,
)

from lightning_explain.attribution import explain, find_target_layer, grad_cam, saliency

N, H, W = 4, 16, 16

CALLS = {
    "saliency": lambda model, x: saliency(model, x, target=1),
    "grad_cam-auto": lambda model, x: grad_cam(model, x, target=1),
    "grad_cam-conv": lambda model, x: grad_cam(model, x, target=1, layer="conv"),
    "grad_cam-stem.1-module": lambda model, x: grad_cam(model, x, target=1, layer=model.stem[1]),
    "grad_cam-block": lambda model, x: grad_cam(model, x, layer="block"),
    "explain": lambda model, x: explain(model, x, target=torch.tensor([0, 1, 2, 3])),
    "explain-grad_cam-only": lambda model, x: explain(model, x, layer="block.bn1", methods=("grad_cam",)),
    "explain-saliency-only": lambda model, x: explain(model, x, methods=("saliency",)),
    "find_target_layer": lambda model, x: find_target_layer(model, x),
}


@pytest.fixture
def inputs() -> Tensor:
    torch.manual_seed(1)
    return torch.randn(N, 3, H, W)


def _assert_mixed_flags(model: ResidualCNN) -> None:
    assert model.training is True
    assert model.stem.training and model.stem[1].training and model.dropout.training
    assert model.block.training is False
    assert model.block.bn1.training is False and model.block.bn2.training is False


def test_snapshot_helpers_detect_changes(mixed_model, inputs):
    """The helpers below must be able to fail: a train-mode forward, a backward and a hook all show up."""
    model = mixed_model
    snap = snapshot_model(model)
    model(inputs)  # train mode: BatchNorm statistics of the stem move
    with pytest.raises(AssertionError, match="stem.1.running_mean"):
        assert_model_unchanged(model, snap)

    snap = snapshot_model(model)
    model.fc(torch.randn(2, 16)).sum().backward()  # accumulates into fc.weight.grad, writes fc.bias.grad
    with pytest.raises(AssertionError, match="grad"):
        assert_model_unchanged(model, snap)

    snap = snapshot_model(model)
    model.block.train()
    with pytest.raises(AssertionError, match="training"):
        assert_model_unchanged(model, snap)

    handle = model.conv.register_forward_hook(lambda *args: None)
    with pytest.raises(AssertionError, match="conv"):
        assert_no_hooks(model)
    handle.remove()
    assert_no_hooks(model)


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
@pytest.mark.parametrize("call", CALLS)
def test_model_left_exactly_as_found(mixed_model, inputs, call, context):
    model = mixed_model
    grad_before = model.fc.weight.grad
    snap = snapshot_model(model)
    assert_no_hooks(model)
    ctx = {"plain": contextlib.nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[context]
    with ctx():
        x = inputs.clone()
        CALLS[call](model, x)
    _assert_mixed_flags(model)
    assert_model_unchanged(model, snap)
    assert model.fc.weight.grad is grad_before
    assert model.conv.weight.grad is None
    assert_no_hooks(model)


@pytest.mark.parametrize("call", CALLS)
def test_results_do_not_depend_on_the_models_mode(mixed_model, inputs, call):
    """Computed in eval mode: a train-mode model gives the same result as the same model in eval mode."""
    if call == "find_target_layer":
        assert find_target_layer(mixed_model, inputs) == "relu"
        return
    from_train = CALLS[call](mixed_model, inputs)
    mixed_model.eval()
    from_eval = CALLS[call](mixed_model, inputs)
    if isinstance(from_train, dict):
        assert from_train.keys() == from_eval.keys()
        from_train, from_eval = torch.stack(list(from_train.values())), torch.stack(list(from_eval.values()))
    assert from_train.abs().max() > 0
    torch.testing.assert_close(from_train, from_eval, rtol=0, atol=0)


def test_user_hooks_are_kept(mixed_model, inputs):
    model = mixed_model
    calls: list[str] = []
    handles = [
        model.conv.register_forward_hook(lambda *args: calls.append("conv")),
        model.register_forward_pre_hook(lambda *args: calls.append("root")),
    ]
    try:
        explain(model, inputs, layer="conv")
        assert list(model.conv._forward_hooks) == [handles[0].id]
        assert list(model._forward_pre_hooks) == [handles[1].id]
        assert calls.count("root") == 1 and calls.count("conv") == 1
    finally:
        for handle in handles:
            handle.remove()
    assert_no_hooks(model)


# --------------------------------------------------------------------------- exceptions mid-pass

FAILING_CALLS = {
    "saliency-target-out-of-range": (lambda model, x: saliency(model, x, target=5), ValueError),
    "grad_cam-target-out-of-range": (lambda model, x: grad_cam(model, x, target=5, layer="conv"), ValueError),
    "grad_cam-auto-target-out-of-range": (lambda model, x: grad_cam(model, x, target=-1), ValueError),
    "explain-target-out-of-range": (lambda model, x: explain(model, x, target=torch.tensor([0, 1, 9, 2])), ValueError),
    "explain-target-wrong-shape": (lambda model, x: explain(model, x, target=torch.tensor([0, 1])), ValueError),
    "explain-target-float": (lambda model, x: explain(model, x, target=torch.zeros(N)), TypeError),
    "grad_cam-unknown-layer": (lambda model, x: grad_cam(model, x, layer="convv"), ValueError),
}


def _check_after_failure(model, snap, x, x_before, requires_grad):
    assert_model_unchanged(model, snap)
    assert_no_hooks(model)
    assert x.requires_grad is requires_grad
    assert x.grad is None
    assert torch.equal(x.detach(), x_before)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("call", FAILING_CALLS)
def test_model_restored_after_an_exception(mixed_model, inputs, call, requires_grad):
    model = mixed_model
    fn, error = FAILING_CALLS[call]
    snap = snapshot_model(model)
    x = inputs.clone().requires_grad_(requires_grad)
    with pytest.raises(error):
        fn(model, x)
    _assert_mixed_flags(model)
    _check_after_failure(model, snap, x, inputs, requires_grad)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize(
    "call",
    [
        lambda model, x: grad_cam(model, x, layer="features"),
        lambda model, x: grad_cam(model, x, layer="features.2"),
        lambda model, x: grad_cam(model, x),  # fails while finding the layer
        lambda model, x: explain(model, x, layer="features"),
        lambda model, x: saliency(model, x),
    ],
    ids=["grad_cam-features", "grad_cam-features.2", "grad_cam-auto", "explain", "saliency"],
)
def test_model_restored_when_forward_raises_after_the_hooked_layer(call, requires_grad):
    torch.manual_seed(0)
    model = BrokenCNN(in_channels=1, num_classes=3)
    model.train()
    model.features[2].eval()
    snap = snapshot_model(model)
    inputs = torch.randn(N, 1, H, W)
    x = inputs.clone().requires_grad_(requires_grad)
    with pytest.raises(RuntimeError, match=BrokenCNN.message):
        call(model, x)
    assert model.training and model.features.training and not model.features[2].training
    _check_after_failure(model, snap, x, inputs, requires_grad)


# --------------------------------------------------------------------------- the input


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("call", [c for c in CALLS if c != "find_target_layer"])
def test_input_left_as_found(mixed_model, inputs, call, requires_grad):
    x = inputs.clone().requires_grad_(requires_grad)
    result = CALLS[call](mixed_model, x)
    assert x.requires_grad is requires_grad
    assert x.is_leaf
    assert x.grad is None
    assert torch.equal(x.detach(), inputs)
    values = result.values() if isinstance(result, dict) else [result]
    for value in values:
        assert not value.requires_grad
        assert value.grad_fn is None


# --------------------------------------------------------------------------- the global RNG


@pytest.mark.parametrize("call", CALLS)
def test_global_rng_untouched(mixed_model, inputs, call):
    model = mixed_model  # Dropout in train mode: a train-mode forward would draw from the RNG
    state = torch.random.get_rng_state()
    with torch.no_grad():
        model(inputs)
    assert not torch.equal(torch.random.get_rng_state(), state), "precondition: train-mode Dropout draws"

    state = torch.random.get_rng_state()
    CALLS[call](model, inputs)
    assert torch.equal(torch.random.get_rng_state(), state)
