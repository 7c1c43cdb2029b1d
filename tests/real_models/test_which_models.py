"""The "Which models" script's row for one CNN (the whole table is printed by running the script)."""

import pytest
from real_architectures import CNNS

pytestmark = pytest.mark.real_models


def test_a_row_names_the_layer_and_the_agreement():
    for module in ("torchvision", "pytorch_grad_cam", "captum"):
        pytest.importorskip(module)
    import which_models

    line = which_models.row(next(c for c in CNNS if c.id == "torchvision-resnet18"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["torchvision ResNet-18", "`layer4`"]
    assert len(cells) == len(which_models.HEADER.strip("|").split("|"))
    assert cells[4] == "1.0000 / 1.0000" and cells[5] == "1.0000"
