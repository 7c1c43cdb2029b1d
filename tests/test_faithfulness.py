"""deletion_insertion against torchcam 0.5's DeletionInsertionMetric, and its batching and targets."""

from __future__ import annotations

import contextlib
from functools import partial

import pytest
import torch
from torch import nn

from lightning_explain.attribution import deletion_insertion, grad_cam, saliency

metrics = pytest.importorskip("torchcam.metrics")


class GivenMaps:
    """A stand-in CAM extractor for torchcam's metric that returns maps computed elsewhere (ours)."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    @contextlib.contextmanager
    def _hooks_off(self):
        yield

    def __call__(self, class_idx, scores):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


@pytest.mark.parametrize(("steps", "size", "baseline"), [(20, 14, 0.0), (7, 14, 0.5), (300, 9, 0.0), (1, 9, -1.0)])
@pytest.mark.parametrize("method", ["grad_cam", "saliency"])
def test_equals_torchcams_deletion_insertion_metric(steps, size, baseline, method):
    model = cnn()
    x = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps = grad_cam(model, x, layer="2") if method == "grad_cam" else saliency(model, x)
    reference = metrics.DeletionInsertionMetric(
        GivenMaps(model, maps),
        partial(torch.softmax, dim=-1),
        steps=steps,
        baseline=torch.full((1, *x.shape[1:]), baseline),
        batch_size=7,
    )
    for i in range(len(x)):  # one sample at a time: torchcam's summary is a mean
        reference.reset()
        reference.cam_extractor.maps = maps[i : i + 1]
        reference.update(x[i : i + 1])
        deletion, insertion = deletion_insertion(model, x[i : i + 1], maps[i : i + 1], steps=steps, baseline=baseline)
        summary = reference.summary()
        assert deletion.item() == pytest.approx(summary["deletion_auc"], abs=1e-3)
        assert insertion.item() == pytest.approx(summary["insertion_auc"], abs=1e-3)


def test_chunking_and_the_batch_do_not_change_the_result():
    model = cnn()
    x = torch.randn(6, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    maps = saliency(model, x)
    whole = deletion_insertion(model, x, maps, chunk_size=1000)
    small = deletion_insertion(model, x, maps, chunk_size=1)
    alone = [deletion_insertion(model, x[i : i + 1], maps[i : i + 1]) for i in range(len(x))]
    for a, b in zip(whole, small, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(whole[0], torch.cat([d for d, _ in alone]))
    torch.testing.assert_close(whole[1], torch.cat([i for _, i in alone]))


def test_a_faithful_map_beats_its_reverse():
    """A model that reads one pixel: the map that ranks that pixel first deletes fast and inserts fast."""

    class OnePixel(nn.Module):
        def forward(self, x):
            score = 10 * x[:, 0, 2, 3]
            return torch.stack([score, -score], dim=1)

    model = OnePixel()
    x = torch.ones(2, 1, 6, 6)
    right = torch.zeros(2, 6, 6)
    right[:, 2, 3] = 1.0
    deletion, insertion = deletion_insertion(model, x, right, target=0, steps=36)
    reverse_deletion, reverse_insertion = deletion_insertion(model, x, -right, target=0, steps=36)
    assert bool((deletion < reverse_deletion - 0.4).all()) and bool((insertion > reverse_insertion + 0.4).all())


def test_bad_arguments_name_the_problem():
    model = cnn()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="one map per input"):
        deletion_insertion(model, x, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="scores must be one of"):
        deletion_insertion(model, x, torch.zeros(2, 8, 8), scores="probabilities")
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(model, x, torch.zeros(2, 8, 8), steps=0)
