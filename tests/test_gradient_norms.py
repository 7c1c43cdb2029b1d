"""Tests for lightning_explain.analysis.gradient_norms: layer ownership, grouped norms and probe-loss gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_explain.analysis.gradient_norms import grouped_norms, parameter_owners, probe_loss_gradients

# --- parameter_owners -------------------------------------------------------------------------------------------------


class WithRootParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))
        self.norm = nn.LayerNorm(2)

    def forward(self, x):
        return self.norm(self.body(x)) * self.scale


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.hidden = nn.Linear(3, 3)
        self.decode = nn.Linear(3, 5, bias=False)
        self.decode.weight = self.embed.weight  # tied: decode owns no parameter of its own any more
        self.head = nn.Linear(3, 5)


def test_parameter_owners_names_and_indices():
    model = WithRootParameter()
    names, owner = parameter_owners(model)
    assert names == ["root", "body.0", "body.2", "norm"]
    modules = dict(model.named_modules())
    expected = {id(model.scale): 0}
    for index, name in enumerate(names[1:], start=1):
        for parameter in modules[name].parameters(recurse=False):
            expected[id(parameter)] = index
    assert {id(p): i for p, i in owner.items()} == expected
    assert len(owner) == len(list(model.parameters()))
    assert owner[model.body[0].weight] == owner[model.body[0].bias] == 1
    assert owner[model.norm.bias] == 3


def test_parameter_owners_without_root_parameters():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    names, owner = parameter_owners(model)
    assert names == ["0", "2"]
    assert owner[model[0].weight] == 0 and owner[model[2].bias] == 1


def test_parameter_owners_tied_parameter_counted_once():
    model = Tied()
    names, owner = parameter_owners(model)
    assert names == ["embed", "hidden", "head"]  # decode only holds the embedding's weight
    assert owner[model.decode.weight] == names.index("embed")
    assert len(owner) == len(list(model.parameters())) == 5
    assert sorted(set(owner.values())) == [0, 1, 2]


def test_parameter_owners_shared_module_counted_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(2, 1))
    names, owner = parameter_owners(model)
    assert names == ["0", "3"]
    assert len(owner) == 4


def test_parameter_owners_layer_with_own_and_shared_parameters():
    model = nn.Module()
    model.a = nn.Linear(2, 2)
    model.b = nn.Linear(2, 2)
    model.b.weight = model.a.weight  # b still owns its bias
    names, owner = parameter_owners(model)
    assert names == ["a", "b"]
    assert owner[model.b.weight] == 0 and owner[model.b.bias] == 1


def test_parameter_owners_no_parameters():
    assert parameter_owners(nn.ReLU()) == ([], {})


# --- grouped_norms ----------------------------------------------------------------------------------------------------


def _reference_norm(tensors, norm_type):
    if not tensors:
        return torch.tensor(0.0, dtype=torch.float64)
    return torch.linalg.vector_norm(torch.cat([t.double().flatten() for t in tensors]), norm_type)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf, 1, 2])
def test_grouped_norms_match_concatenated_vector_norms(norm_type):
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (4,), (2, 2, 2), (5,), (1,), (6, 2)]
    grads = [torch.randn(shape, generator=generator) * (i + 1) for i, shape in enumerate(shapes)]
    groups = [0, 0, 2, 1, 2, 3]
    group_norms, total = grouped_norms(grads, groups, 5, norm_type)
    assert group_norms.shape == (5,) and group_norms.dtype == torch.float32
    assert total.shape == () and total.dtype == torch.float32
    for g in range(5):
        members = [grad for grad, group in zip(grads, groups, strict=True) if group == g]
        expected = _reference_norm(members, norm_type).float()
        torch.testing.assert_close(group_norms[g], expected, rtol=1e-5, atol=0)
    assert group_norms[4] == 0  # a group with no gradient
    torch.testing.assert_close(total, _reference_norm(grads, norm_type).float(), rtol=1e-5, atol=0)


def test_grouped_norms_hand_computed():
    grads = [torch.tensor([3.0]), torch.tensor([4.0]), torch.tensor([-12.0, 0.0])]
    group_norms, total = grouped_norms(grads, [0, 0, 1], 2)
    torch.testing.assert_close(group_norms, torch.tensor([5.0, 12.0]))
    torch.testing.assert_close(total, torch.tensor(13.0))
    group_norms, total = grouped_norms(grads, [0, 0, 1], 2, norm_type=1)
    torch.testing.assert_close(group_norms, torch.tensor([7.0, 12.0]))
    torch.testing.assert_close(total, torch.tensor(19.0))
    group_norms, total = grouped_norms(grads, [0, 0, 1], 3, norm_type=math.inf)
    torch.testing.assert_close(group_norms, torch.tensor([4.0, 12.0, 0.0]))
    torch.testing.assert_close(total, torch.tensor(12.0))


def test_grouped_norms_all_zero_grads():
    grads = [torch.zeros(3), torch.zeros(2, 2)]
    for norm_type in (1.0, 2.0, 3.5, math.inf):
        group_norms, total = grouped_norms(grads, [1, 1], 2, norm_type)
        torch.testing.assert_close(group_norms, torch.zeros(2))
        assert total == 0


def test_grouped_norms_float64_and_mixed_dtypes():
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, generator=generator, dtype=torch.float64), torch.randn(3, generator=generator)]
    group_norms, total = grouped_norms(grads, [0, 1], 2)
    assert group_norms.dtype == torch.float32
    torch.testing.assert_close(group_norms[0], _reference_norm(grads[:1], 2).float())
    torch.testing.assert_close(total, _reference_norm(grads, 2).float())


def test_grouped_norms_from_model_gradients():
    torch.manual_seed(0)
    model = WithRootParameter()
    model(torch.randn(5, 3)).pow(2).sum().backward()
    names, owner = parameter_owners(model)
    parameters = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in parameters]
    group_norms, total = grouped_norms(grads, [owner[p] for p in parameters], len(names))
    modules = dict(model.named_modules())
    for index, name in enumerate(names):
        module = model if name == "root" else modules[name]
        expected = _reference_norm([p.grad for p in module.parameters(recurse=False)], 2).float()
        torch.testing.assert_close(group_norms[index], expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(total, _reference_norm(grads, 2).float(), rtol=1e-5, atol=0)


def test_grouped_norms_empty_raises():
    with pytest.raises(ValueError):
        grouped_norms([], [], 3)


# --- probe_loss_gradients ---------------------------------------------------------------------------------------------


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 4, 4)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.drop(F.relu(self.bn(self.conv(x)))).flatten(1))


def _small_setup():
    torch.manual_seed(0)
    model = SmallNet()
    # Nontrivial running statistics so that eval mode and train mode give different outputs.
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    inputs = torch.randn(5, 1, 4, 4)
    targets = torch.tensor([0, 3, 1, 2, 1])
    return model, inputs, targets


def _index(parameters, parameter):
    return next(i for i, p in enumerate(parameters) if p is parameter)


def _reference_grads(model, inputs, targets, parameters, loss_fn=F.cross_entropy):
    flags = {name: m.training for name, m in model.named_modules()}
    model.eval()
    loss = loss_fn(model(inputs), targets)
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    for name, m in model.named_modules():
        m.training = flags[name]
    return grads


def test_probe_loss_gradients_match_eval_mode_cross_entropy():
    model, inputs, targets = _small_setup()
    model.train()
    parameters = list(model.parameters())
    grads = probe_loss_gradients(model, inputs, targets, parameters)
    expected = _reference_grads(model, inputs, targets, parameters)
    assert len(grads) == len(parameters)
    used = [p is not model.unused.weight and p is not model.unused.bias for p in parameters]
    for grad, reference, is_used in zip(grads, expected, used, strict=True):
        if is_used:
            assert grad is not None and not grad.requires_grad
            torch.testing.assert_close(grad, reference)
        else:
            assert grad is None and reference is None
    # Train mode (batch statistics, dropout) would give other gradients: the eval-mode check is meaningful.
    train_loss = F.cross_entropy(model(inputs), targets)
    train_grads = torch.autograd.grad(train_loss, [model.conv.weight])
    assert not torch.allclose(train_grads[0], grads[_index(parameters, model.conv.weight)])


def test_probe_loss_gradients_subset_of_parameters():
    model, inputs, targets = _small_setup()
    parameters = [model.fc.bias, model.conv.weight]
    grads = probe_loss_gradients(model, inputs, targets, parameters)
    expected = _reference_grads(model, inputs, targets, parameters)
    for grad, reference in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, reference)


@pytest.mark.parametrize("training", [True, False])
def test_probe_loss_gradients_leave_model_untouched(training):
    model, inputs, targets = _small_setup()
    model.train(training)
    model.drop.train(True)  # a mixed state must come back exactly
    flags = {name: m.training for name, m in model.named_modules()}
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    existing = model.fc.weight.grad.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inputs_before = inputs.clone()

    probe_loss_gradients(model, inputs, targets, list(model.parameters()))

    assert {name: m.training for name, m in model.named_modules()} == flags
    torch.testing.assert_close(model.fc.weight.grad, existing)
    for name, parameter in model.named_parameters():
        if name != "fc.weight":
            assert parameter.grad is None, name
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key  # weights, BatchNorm running stats and num_batches_tracked
    assert torch.equal(inputs, inputs_before)


def test_probe_loss_gradients_do_not_draw_dropout_randomness():
    model, inputs, targets = _small_setup()
    model.train()
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    probe_loss_gradients(model, inputs, targets, list(model.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_probe_loss_gradients_work_under_no_grad_and_inference_mode():
    model, inputs, targets = _small_setup()
    parameters = list(model.fc.parameters())
    expected = _reference_grads(model, inputs, targets, parameters)
    with torch.no_grad():
        grads = probe_loss_gradients(model, inputs, targets, parameters)
    for grad, reference in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, reference)
    with torch.inference_mode():
        grads = probe_loss_gradients(model, inputs, targets, parameters)
    for grad, reference in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, reference)


def test_probe_loss_gradients_custom_loss_fn():
    model, inputs, targets = _small_setup()
    calls = []

    def loss_fn(logits, y):
        calls.append((logits.shape, y))
        return (logits.gather(1, y[:, None]) ** 2).sum() * 0.5

    parameters = list(model.parameters())
    grads = probe_loss_gradients(model, inputs, targets, parameters, loss_fn=loss_fn)
    assert len(calls) == 1 and calls[0][0] == (5, 4) and torch.equal(calls[0][1], targets)
    calls.clear()
    expected = _reference_grads(model, inputs, targets, parameters, loss_fn=loss_fn)
    default = probe_loss_gradients(model, inputs, targets, parameters)
    index = _index(parameters, model.fc.weight)
    torch.testing.assert_close(grads[index], expected[index])
    assert not torch.allclose(grads[index], default[index])


def test_probe_loss_gradients_do_not_need_inputs_grad():
    model, inputs, targets = _small_setup()
    inputs.requires_grad_(True)
    grads = probe_loss_gradients(model, inputs, targets, [model.fc.bias])
    assert inputs.grad is None
    assert grads[0] is not None
