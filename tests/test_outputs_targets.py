"""output= (dict, ModelOutput, tuple, key, index, callable) and the heads beyond class logits: regression,
segmentation and callable targets, through every method."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from method_calls import CNN_HEATMAP_METHODS
from torch import nn

from lightning_explain.attribution import compute_explanation, explain, grad_cam, saliency
from lightning_explain.core.outputs import check_output_spec, select_output
from lightning_explain.core.targets import Target, resolve_target

HEATMAP_METHODS = list(CNN_HEATMAP_METHODS)  # attention_rollout's outputs and targets: test_attention_rollout.py
SMALL = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3}, "occlusion": {"window": 4}}


class Net(nn.Module):
    """A small CNN whose forward returns what ``wrap`` makes of its logits."""

    def __init__(self, wrap=lambda logits: logits, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))
        self.wrap = wrap

    def forward(self, x):
        return self.wrap(self.head(self.features(x)))


class FakeModelOutput(OrderedDict):
    """What transformers' ModelOutput is: an ordered dict with attributes and to_tuple()."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error

    def to_tuple(self):
        return tuple(self.values())


def _options(methods):
    return {m: SMALL[m] for m in methods if m in SMALL}


@pytest.fixture
def images():
    return torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("wrap", "output"),
    [
        (lambda z: {"logits": z, "loss": z.sum()}, None),
        (lambda z: FakeModelOutput(loss=z.sum(), logits=z), None),
        (lambda z: (z, z * 0), None),
        (lambda z: {"scores": z}, "scores"),
        (lambda z: (z * 0, z), 1),
        (lambda z: {"a": {"b": z}}, lambda out: out["a"]["b"]),
    ],
    ids=["dict", "model_output", "tuple", "key", "index", "callable"],
)
def test_every_method_reads_the_selected_output_as_the_plain_model_would(images, wrap, output):
    torch.manual_seed(0)
    plain = Net()
    wrapped = Net(wrap)
    wrapped.load_state_dict(plain.state_dict())
    expected = explain(plain, images, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    got = explain(wrapped, images, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS), output=output)
    for method in HEATMAP_METHODS:
        torch.testing.assert_close(got[method], expected[method], msg=method)


def test_model_output_by_position_and_clear_errors():
    logits = torch.randn(2, 3)
    out = FakeModelOutput(loss=logits.sum(), logits=logits)
    assert select_output(out, 1) is logits
    with pytest.raises(TypeError, match=r"keys \['hidden'\].*Pass output="):
        select_output({"hidden": logits})
    with pytest.raises(TypeError, match="output='missing' gives nothing"):
        select_output({"logits": logits}, "missing")
    with pytest.raises(TypeError, match="output=5 gives nothing"):
        select_output((logits,), 5)
    with pytest.raises(ValueError, match="output must be None"):
        check_output_spec(3.5)
    with pytest.raises(ValueError, match="output must be None"):
        saliency(Net(), torch.randn(1, 1, 8, 8), output=[0])


def test_a_regression_head_explains_its_output_whatever_its_shape(images):
    torch.manual_seed(0)
    one = Net(classes=1)
    flat = Net(lambda z: z[:, 0], classes=1)
    flat.load_state_dict(one.state_dict())
    a = explain(one, images, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    b = explain(flat, images, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    for method in HEATMAP_METHODS:
        torch.testing.assert_close(a[method], b[method], msg=method)
    explanation = compute_explanation(one, images)
    assert explanation.targets is None
    # d(output)/dx by hand for saliency
    x = images.clone().requires_grad_(True)
    one(x).sum().backward()
    torch.testing.assert_close(a["saliency"], x.grad.abs().amax(dim=1))


def test_a_callable_target_is_the_score_explained_by_every_method(images):
    torch.manual_seed(0)
    net = Net()
    weights = torch.tensor([1.0, -2.0, 0.5])

    def score(logits):
        return logits @ weights

    class Scored(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x) @ weights

    expected = explain(Scored(), images, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    got = explain(net, images, target=score, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    for method in HEATMAP_METHODS:
        torch.testing.assert_close(got[method], expected[method], msg=method)
    with pytest.raises(ValueError, match="one score per sample"):
        saliency(net, images, target=lambda logits: logits.sum())


class Segmenter(nn.Module):
    """A tiny fully convolutional segmenter: logits (N, K, H, W)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x))


def test_segmentation_explains_the_class_logits_summed_over_its_predicted_pixels(images):
    torch.manual_seed(1)
    model = Segmenter().eval()
    logits = model(images).detach()
    predicted = logits.argmax(dim=1)
    target = resolve_target(logits, 2)
    assert target.index.tolist() == [2, 2, 2]
    torch.testing.assert_close(target.mask, predicted == 2)
    # The score by hand (pytorch-grad-cam's SemanticSegmentationTarget): sum of class-2 logits over its mask.
    x = images.clone().requires_grad_(True)
    (model(x)[:, 2] * (predicted == 2)).sum().backward()
    torch.testing.assert_close(saliency(model, images, target=2), x.grad.abs().amax(dim=1))
    # Grad-CAM at the features by hand.
    maps = grad_cam(model, images, target=2, layer="features")
    assert maps.shape == (3, 8, 8) and bool(torch.isfinite(maps).all())
    # Every method runs on a segmenter (the mask is repeated for the multi-pass methods' copies).
    all_maps = explain(model, images, target=2, methods=HEATMAP_METHODS, options=_options(HEATMAP_METHODS))
    assert all(m.shape == (3, 8, 8) for m in all_maps.values())


def test_segmentation_default_target_is_the_largest_predicted_class_other_than_background():
    logits = torch.zeros(2, 3, 4, 4)
    logits[0, 0] = 5  # sample 0: all background ...
    logits[0, 2, 0, 0] = 9  # ... but one pixel of class 2
    logits[1, 0] = 5  # sample 1: background only
    target = resolve_target(logits, None)
    assert target.index.tolist() == [2, 0]
    assert int(target.mask[0].sum()) == 1 and bool(target.mask[1].all())


def test_a_target_repeats_for_stacked_copies():
    logits = torch.randn(2, 3, 4, 4)
    target = resolve_target(logits, 1)
    twice = target.repeat(2)
    assert twice.index.tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(twice.scores(logits.repeat(2, 1, 1, 1)), target.scores(logits).repeat(2))
    calls = []
    scored = Target(score_fn=lambda z: calls.append(len(z)) or z[:, 0]).repeat(3)
    assert scored.scores(torch.randn(6, 3)).shape == (6,) and calls == [2, 2, 2]
