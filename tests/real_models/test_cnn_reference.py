"""CNNs keep the last spatial NCHW layer and agree with pytorch-grad-cam and Captum's LayerGradCam.

Random weights, eval mode, 64x64 inputs, the predicted classes as explicit targets. DenseNet, where
pytorch-grad-cam has a known defect, is in test_densenet_reference_defect.py.
"""

import functools

import pytest
import torch
from real_architectures import CNNS, captum_maps, pearson, pytorch_grad_cam_maps

from lightning_explain.attribution import compute_explanation, grad_cam, grad_cam_pp

pytestmark = pytest.mark.real_models


@functools.cache
def prepared(case):
    """One model, batch and target per case for the whole module (every call leaves the model as found)."""
    return case.prepared()


@pytest.mark.parametrize("case", CNNS, ids=lambda c: c.id)
def test_last_spatial_layer_read_as_nchw(case):
    model, x, targets = prepared(case)
    explanation = compute_explanation(model, x, targets, methods=("grad_cam",))
    assert explanation.layer_name == case.layer
    assert explanation.layout.kind == "nchw"
    assert explanation.layout.prefix_tokens == 0


@pytest.mark.parametrize("case", CNNS, ids=lambda c: c.id)
def test_zero_config_equals_captum(case):
    pytest.importorskip("captum")
    model, x, targets = prepared(case)
    expected = captum_maps(model, case.layer, x, targets)
    assert expected.flatten(1).std(1).min() > 0  # not flat: the comparison means something
    torch.testing.assert_close(grad_cam(model, x, target=targets), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
@pytest.mark.parametrize("case", CNNS, ids=lambda c: c.id)
def test_zero_config_matches_pytorch_grad_cam(case, method):
    pytest.importorskip("pytorch_grad_cam")
    model, x, targets = prepared(case)
    ours = {"grad_cam": grad_cam, "grad_cam_pp": grad_cam_pp}[method](model, x, target=targets)
    r = pearson(ours, pytorch_grad_cam_maps(case, model, x, targets, method))
    assert r >= 0.99, f"{case.id} {method}: r = {r:.4f} vs pytorch-grad-cam at {case.layer}"
