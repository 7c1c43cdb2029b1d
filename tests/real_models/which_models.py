"""Print the README's "Which models" table: what zero-config Grad-CAM picks in each architecture, and how well it
agrees with pytorch-grad-cam and Captum.

Run from the repository root, in an environment with the model libraries (the second CI venv has them all)::

    PYTHONPATH=. python tests/real_models/which_models.py

Models are the small random-weight ones of ``real_architectures.py`` (no download); a family whose library is
missing gets a row saying so. r is the smallest per-image Pearson correlation after per-image min-max scaling
(the tests require >= 0.99); a cell that failed says why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_architectures import (  # noqa: E402
    CNNS,
    DENSENET,
    TRANSFORMERS,
    Case,
    captum_maps,
    pearson,
    pytorch_grad_cam_maps,
)

from lightning_explain.attribution import compute_explanation, grad_cam_pp  # noqa: E402

HEADER = (
    "| Architecture | Layer chosen automatically | Layout / prefix tokens | Checked against "
    "| r vs pytorch-grad-cam (Grad-CAM / ++) | r vs Captum LayerGradCam |"
)


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".replace("|", "/").replace("\n", " ")
    return text if len(text) <= 70 else text[:67] + "..."


def _r(compute) -> str:
    try:
        return f"{compute():.4f}"
    except Exception as error:  # one cell fails, the table goes on
        return f"fails ({_short(error)})"


def _layout(explanation, case: Case) -> str:
    layout = getattr(explanation, "layout", None)
    if layout is None:
        return f"not reported (no `.layout`; expected {case.kind}, {case.prefix_tokens})"
    text = f"{layout.kind}, {layout.prefix_tokens}"
    if getattr(layout, "grid", None) is not None:
        text += f", grid {tuple(layout.grid)}"
    return text


def row(case: Case) -> str:
    try:
        model, x, targets = case.prepared()
    except Exception as error:
        return f"| {case.family} | not run: {_short(error)} | | | | |"
    documented = case.layer_name(model)
    try:
        explanation = compute_explanation(model, x, targets, methods=("grad_cam",))
        chosen = f"`{explanation.layer_name}`"
        if explanation.layer_name != documented:
            chosen += f" (documented: `{documented}`)"
        layout = _layout(explanation, case)
        ours = explanation.maps["grad_cam"]
    except Exception as error:
        return f"| {case.family} | fails ({_short(error)}) | | | | |"
    against = f"pytorch-grad-cam at `{documented}`"
    if case.kind == "nchw":
        against += " + Captum"
    cam = _r(lambda: pearson(ours, pytorch_grad_cam_maps(case, model, x, targets, "grad_cam")))
    cam_pp = _r(
        lambda: pearson(
            grad_cam_pp(model, x, target=targets), pytorch_grad_cam_maps(case, model, x, targets, "grad_cam_pp")
        )
    )
    captum = "n/a (token / NHWC layer)"
    if case.kind == "nchw":
        captum = _r(lambda: pearson(ours, captum_maps(model, explanation.layer_name, x, targets)))
    if case is DENSENET:
        cam += " (reference defect: in-place ReLU)"
    return f"| {case.family} | {chosen} | {layout} | {against} | {cam} / {cam_pp} | {captum} |"


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}; small random-weight models; r = min per-image Pearson after min-max scaling\n")
    print(HEADER)
    print("|" + " --- |" * 6)
    for case in [*TRANSFORMERS, *CNNS, DENSENET]:
        print(row(case), flush=True)


if __name__ == "__main__":
    main()
