"""sanity_check: cascading parameter randomisation (Adebayo et al. 2018)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from lit_helpers import make_images
from toy_models import ResidualCNN, TinyCNN, assert_model_unchanged, assert_no_hooks, snapshot_model, warm_batchnorm

from lightning_explain.analysis.sanity_check import (
    SanityCheckResult,
    randomisable_layers,
    randomise_layer,
    sanity_check,
)


def edge_map(model, inputs, targets):
    """A "method" that ignores the model: horizontal edges of the input."""
    return (inputs[:, :, :, 1:] - inputs[:, :, :, :-1]).abs().amax(1)


@pytest.fixture(scope="module")
def trained():
    """A TinyCNN trained for 60 full-batch Adam steps on the square-position task (loss about 0.2)."""
    torch.manual_seed(0)
    images, labels = make_images(64, seed=1)
    model = TinyCNN(1, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model, images[:8]


def test_gradient_methods_pass_and_their_correlation_falls(trained):
    model, images = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # passing methods give no warning
        result = sanity_check(model, images, methods=("saliency", "grad_cam"), seed=1)
    assert isinstance(result, SanityCheckResult)
    assert result.layers == ["fc", "features.2", "features.0"]  # output first
    assert result.passed == {"saliency": True, "grad_cam": True}
    for method in ("saliency", "grad_cam"):
        names = [name for name, _ in result.correlations[method]]
        assert names == result.layers
        assert result.final(method) < 0.5
    saliency = [rho for _, rho in result.correlations["saliency"]]
    assert saliency[-1] < saliency[0] < 0.9  # randomising more layers moves the maps further away
    assert "saliency: passed" in result.summary


def test_a_method_that_ignores_the_weights_is_flagged_with_a_warning(trained):
    model, images = trained
    with pytest.warns(UserWarning, match="'edge_map' do not depend on the model's weights"):
        result = sanity_check(model, images, methods=("saliency", edge_map))
    assert result.passed == {"saliency": True, "edge_map": False}
    assert all(rho == pytest.approx(1.0) for _, rho in result.correlations["edge_map"])
    assert "edge_map: FAILED" in result.summary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not sanity_check(model, images, methods=(edge_map,), warn=False).passed["edge_map"]


def test_model_rng_and_hooks_are_left_as_found():
    model = ResidualCNN(in_channels=3, num_classes=4)
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    warm_batchnorm(model, images)
    model.train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    snapshot = snapshot_model(model)
    rng = torch.random.get_rng_state()
    result = sanity_check(model, images, methods=("saliency", "grad_cam"), seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert_model_unchanged(model, snapshot)
    assert_no_hooks(model)
    assert result.layers == list(reversed(randomisable_layers(model, images)))
    assert result.layers[0] == "fc" and result.layers[-1] == "stem.0" and len(result.layers) == 8


def test_seeded_and_targets_fixed_on_the_trained_model(trained):
    model, images = trained
    seen: list[torch.Tensor] = []

    def recording(model, inputs, targets):
        seen.append(targets)
        return edge_map(model, inputs, targets)

    first = sanity_check(model, images, methods=("saliency", recording), seed=5, warn=False)
    with torch.inference_mode():  # also from a validation step
        second = sanity_check(model, images, methods=("saliency",), seed=5)
    assert first.correlations["saliency"] == second.correlations["saliency"]
    predicted = model(images).argmax(1)
    assert all(torch.equal(t, predicted) for t in seen) and len(seen) == 4  # trained + 3 randomised models


def test_chosen_layers_target_and_unnamed_callables(trained):
    model, images = trained
    result = sanity_check(model, images, 1, methods="saliency", layers=["fc"])
    assert [name for name, _ in result.correlations["saliency"]] == ["fc"]
    lambdas = sanity_check(model, images, methods=(lambda m, x, t: x[:, 0], lambda m, x, t: -x[:, 0]), warn=False)
    assert sorted(lambdas.correlations) == ["<lambda>", "<lambda>_1"]


def test_randomise_layer_keeps_scale_and_draws_only_from_the_generator():
    layer = torch.nn.Linear(50, 40)
    before = layer.weight.detach().clone()
    rng = torch.random.get_rng_state()
    randomise_layer(layer, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not torch.equal(layer.weight, before)
    assert layer.weight.std().item() == pytest.approx(before.std().item(), rel=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(methods=("nope",)), "Unknown method"),
        (dict(methods=(3,)), "method names or callables"),
        (dict(threshold=1.5), "threshold"),
        (dict(layers=["missing"]), "unknown"),
    ],
)
def test_bad_arguments_are_clear_errors(trained, kwargs, match):
    model, images = trained
    with pytest.raises(ValueError, match=match):
        sanity_check(model, images, **kwargs)
