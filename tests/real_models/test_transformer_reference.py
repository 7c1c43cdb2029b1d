"""Zero-config Grad-CAM / Grad-CAM++ on ViT-style and Swin models against pytorch-grad-cam.

pytorch-grad-cam is given each family's documented target layer and the ``reshape_transform`` its docs describe
(drop the prefix tokens, reshape to the patch grid, permute to NCHW; for Swin NHWC -> NCHW); ours gets the raw
model (a Hugging Face model included) and nothing else. Both explain the same explicit classes.
"""

import pytest
from real_architectures import TRANSFORMERS, pearson, pytorch_grad_cam_maps

from lightning_explain.attribution import grad_cam, grad_cam_pp

pytestmark = pytest.mark.real_models
pytest.importorskip("pytorch_grad_cam")

OURS = {"grad_cam": grad_cam, "grad_cam_pp": grad_cam_pp}


@pytest.mark.parametrize("method", sorted(OURS))
@pytest.mark.parametrize("case", TRANSFORMERS, ids=lambda c: c.id)
def test_zero_config_matches_pytorch_grad_cam(case, method):
    model, x, targets = case.prepared()
    reference = pytorch_grad_cam_maps(case, model, x, targets, method)
    ours = OURS[method](model, x, target=targets)
    assert tuple(ours.shape) == (x.shape[0], *x.shape[2:])
    r = pearson(ours, reference)
    assert r >= 0.99, f"{case.id} {method}: r = {r:.4f} vs pytorch-grad-cam at {case.layer_name(model)}"
