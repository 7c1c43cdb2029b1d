"""activation_maximization: seeded gradient ascent on the input, the model untouched."""

from __future__ import annotations

import pytest
import torch
from toy_models import MLP, ResidualCNN, assert_model_unchanged, assert_no_hooks, snapshot_model, warm_batchnorm

from lightning_explain.analysis.activation_maximization import activation_maximization, total_variation


def channel_activation(model, layer, images, channels):
    """Mean activation of channel channels[i] for image i, in eval mode."""
    out = {}
    handle = layer.register_forward_hook(lambda m, a, o: out.setdefault("a", o.detach().clone()))
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
        for m, f in flags:
            m.training = f
    a = out["a"]
    return a[torch.arange(len(channels)), torch.tensor(channels)].reshape(len(channels), -1).mean(1)


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = ResidualCNN(in_channels=3, num_classes=4)
    warm_batchnorm(net, torch.randn(4, 3, 12, 12))
    return net.train()


def test_it_raises_the_target_channels_activation(model):
    channels = [0, 3, 7]
    start = torch.randn((3, 3, 12, 12), generator=torch.Generator().manual_seed(0)) * 0.1
    images = activation_maximization(model, "block.conv2", channels, input_shape=(3, 12, 12), steps=20, lr=0.2)
    assert images.shape == (3, 3, 12, 12) and images.dtype == torch.float32
    before = channel_activation(model, model.block.conv2, start, channels)
    after = channel_activation(model, model.block.conv2, images, channels)
    assert (after > 3 * before.clamp_min(0) + 0.02).all(), (before, after)
    # each image is specific to its channel: channel c is higher on its own image than on the others'
    for i, c in enumerate(channels):
        others = channel_activation(model, model.block.conv2, images[[j for j in range(3) if j != i]], [c, c])
        assert after[i] > others.max()


def test_deterministic_with_the_seed_and_no_global_rng(model):
    rng = torch.random.get_rng_state()
    with torch.inference_mode():  # works from a validation step too
        first = activation_maximization(model, model.conv, [1, 2], input_shape=(3, 8, 8), steps=5, seed=4)
    assert not first.is_inference()
    assert torch.equal(torch.random.get_rng_state(), rng)
    again = activation_maximization(model, model.conv, [1, 2], input_shape=(3, 8, 8), steps=5, seed=4)
    other = activation_maximization(model, model.conv, [1, 2], input_shape=(3, 8, 8), steps=5, seed=5)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_model_left_exactly_as_found(model):
    model.fc.weight.grad = torch.full_like(model.fc.weight, 2.0)
    model.stem[0].weight.requires_grad_(False)
    snapshot = snapshot_model(model)
    activation_maximization(model, "relu", [0], input_shape=(3, 8, 8), steps=3)
    assert_model_unchanged(model, snapshot)
    assert_no_hooks(model)
    assert model.stem[0].weight.requires_grad is False and model.conv.weight.requires_grad is True
    assert model.block.conv1.weight.grad is None


def test_regularisation_makes_smoother_images(model):
    rough = activation_maximization(model, "block.conv2", [2], input_shape=(3, 12, 12), steps=20, tv_weight=0)
    smooth = activation_maximization(model, "block.conv2", [2], input_shape=(3, 12, 12), steps=20, tv_weight=1.0)
    assert total_variation(smooth) < total_variation(rough)


def test_units_of_a_linear_layer():
    net = MLP(in_features=6, hidden=5, num_classes=3)
    x = activation_maximization(net, "fc1", [4], input_shape=(6,), steps=20, lr=0.1)
    start = torch.randn((1, 6), generator=torch.Generator().manual_seed(0)) * 0.1
    assert channel_activation(net, net.fc1, x, [4]) > channel_activation(net, net.fc1, start, [4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=[]), "channels"),
        (dict(channels=[99]), "has 8 channels"),
        (dict(steps=0), "steps"),
        (dict(steps=10**6), "steps"),
        (dict(input_shape=(3, 0, 8)), "input_shape"),
        (dict(lr=0), "lr"),
        (dict(tv_weight=-1), "tv_weight"),
        (dict(layer="nope"), "not a module"),
    ],
)
def test_bad_arguments(model, kwargs, match):
    args = dict(layer="stem.0", channels=[0], input_shape=(3, 8, 8), steps=2) | kwargs
    with pytest.raises(ValueError, match=match):
        activation_maximization(model, args.pop("layer"), args.pop("channels"), **args)
