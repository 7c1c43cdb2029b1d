"""Goal 2: explain() against Captum's Saliency + LayerGradCam (and pytorch-grad-cam's GradCAM if present).

Every contender produces the same two maps for the same model, probe, targets and layer:
Captum's ``Saliency(abs=True)`` reduced by the channel maximum and
``LayerGradCam(relu_attributions=True)`` upsampled bilinearly (two forward and two
backward passes), against ``explain`` (one of each). pytorch-grad-cam is optional and needs
torchvision; when it cannot be imported it is reported as unavailable.

    python benchmarks/bench_peers.py [--model digits|synthetic|resnet18] [--device cuda] [--quick]
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from _common import interleaved, parser, report, setup
from models import MODEL_NAMES, build

from lightning_explain.attribution import explain, find_target_layer


def captum_contender(model, layer, inputs, targets):
    """Captum's two attributions, reduced to the same (N, H, W) maps as explain()."""
    from captum.attr import LayerGradCam, Saliency

    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    saliency, grad_cam = Saliency(model), LayerGradCam(model, layer)

    def run() -> dict:
        sal = saliency.attribute(inputs, target=targets, abs=True).amax(dim=1)
        cam = grad_cam.attribute(inputs, target=targets, relu_attributions=True)
        cam = F.interpolate(cam, size=tuple(inputs.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
        return {"saliency": sal, "grad_cam": cam}

    return run


def pytorch_grad_cam_contender(model, layer, inputs, targets):
    """pytorch-grad-cam's GradCAM (its own normalisation, Grad-CAM only), or None when unavailable."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except Exception as error:  # noqa: BLE001 - missing, or torchvision that cannot import
        print(f"pytorch-grad-cam: not installed/unavailable ({type(error).__name__}: {error})")
        return None
    cam = GradCAM(model=model, target_layers=[layer])
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    return lambda: cam(input_tensor=inputs, targets=wanted)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODEL_NAMES, default="synthetic")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="input side (default: 32 digits, 64 synthetic, 224 resnet18)")
    args = p.parse_args(argv)
    device = setup(args)
    net, channels, default_size = build(args.model)
    size = args.size or (min(default_size, 32) if args.quick else default_size)
    repeats = args.repeats or (3 if args.quick else 30)
    model = net.to(device).eval()
    inputs = torch.randn(args.batch, channels, size, size, device=device)
    targets = torch.randint(0, 10, (args.batch,), device=device)
    layer = model.get_submodule(find_target_layer(model, inputs))
    methods = ("saliency", "grad_cam")
    contenders = {
        "explain": lambda: explain(model, inputs, targets, layer, methods),
        "captum Saliency+LayerGradCam": captum_contender(model, layer, inputs, targets),
    }
    ours, theirs = contenders["explain"](), contenders["captum Saliency+LayerGradCam"]()
    same = all(torch.allclose(ours[m], theirs[m], rtol=1e-4, atol=1e-6) for m in methods)
    print(f"model={args.model} probe={tuple(inputs.shape)} device={device} maps equal to Captum's: {same}")
    other = pytorch_grad_cam_contender(model, layer, inputs, targets)
    if other is not None:
        contenders["pytorch-grad-cam GradCAM"] = other
    samples = interleaved(contenders, repeats, device)
    ratios = report(f"explain vs peers ({args.model}, {tuple(inputs.shape)}, {device})", samples, baseline="explain")
    print(f"speed-up of explain over Captum = {ratios['captum Saliency+LayerGradCam']:.3f}x")
    return ratios


if __name__ == "__main__":
    main()
