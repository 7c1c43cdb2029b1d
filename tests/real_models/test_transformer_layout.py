"""The layer zero-config Grad-CAM picks in ViT-style and Swin models, and the layout it reads it in.

No reference library is needed: these run wherever the model's library is installed (the Hugging Face case in
the main test venv).
"""

import pytest
import torch
from real_architectures import TRANSFORMERS, by_hand_cam, hf_vit, reshape_transform

from lightning_explain.attribution import compute_explanation, explain, grad_cam

pytestmark = pytest.mark.real_models


@pytest.mark.parametrize("case", TRANSFORMERS, ids=lambda c: c.id)
def test_layer_and_layout_are_found(case):
    model, x, targets = case.prepared()
    explanation = compute_explanation(model, x, targets, methods=("grad_cam",))
    assert explanation.layer_name == case.layer_name(model)
    layout = explanation.layout
    assert layout.kind == case.kind
    assert layout.prefix_tokens == case.prefix_tokens
    if case.kind == "tokens":
        assert tuple(layout.grid) == case.grid
        assert getattr(model, "num_prefix_tokens", case.prefix_tokens) == case.prefix_tokens  # timm says so too
    assert explanation.maps["grad_cam"].shape == (x.shape[0], *x.shape[2:])


def test_hugging_face_vit_matches_grad_cam_by_hand():
    """The raw ModelOutput model, explained through ``.logits``, against Grad-CAM written out with autograd."""
    case = next(c for c in TRANSFORMERS if c.id == "hf-vit")
    model, x, targets = case.prepared()
    expected = by_hand_cam(model, case.layer_name(model), x, targets, as_map=reshape_transform(case))
    assert expected.flatten(1).std(1).min() > 0  # not flat: the comparison means something
    torch.testing.assert_close(grad_cam(model, x, target=targets), expected, rtol=1e-4, atol=1e-6)


def test_hugging_face_output_selects_logits_by_default():
    torch.manual_seed(0)
    model = hf_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    default = explain(model, x, target=1, methods=("grad_cam",))
    named = explain(model, x, target=1, methods=("grad_cam",), output="logits")
    torch.testing.assert_close(default["grad_cam"], named["grad_cam"], rtol=0, atol=0)
