"""Goal 1: explain(..., methods=("saliency", "grad_cam")) against a hand-written floor.

The floor is the least any implementation can do for both maps: one forward with a hook
that keeps the layer's output, one ``torch.autograd.grad`` to the input and that output,
then the two maps' arithmetic (``max_c |dS/dx|``; ``ReLU(sum_k mean(dS/dA_k) A_k)``,
upsampled). The model is already in eval mode and the hook is registered once, so the
floor pays for nothing but the math.

    python benchmarks/bench_floor.py [--model digits|synthetic|resnet18] [--device cuda] [--quick]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _common import interleaved, parser, report, setup
from models import MODEL_NAMES, build
from torch import Tensor, nn

from lightning_explain.attribution import explain, find_target_layer


class Floor:
    """One forward, one autograd.grad to the input and the layer output, then the maps' arithmetic."""

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model = model
        self.activation: Tensor | None = None
        layer.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.activation = output

    def __call__(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        x = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            score = self.model(x).gather(1, targets[:, None]).sum()
            dx, da = torch.autograd.grad(score, [x, self.activation])
        activation, self.activation = self.activation.detach(), None
        cam = (da.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True).relu()
        cam = F.interpolate(cam, size=tuple(inputs.shape[2:]), mode="bilinear", align_corners=False)
        return {"saliency": dx.abs().amax(dim=1), "grad_cam": cam[:, 0]}


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
    model = net.to(device).eval()  # the floor needs eval mode; explain() sets it itself
    inputs = torch.randn(args.batch, channels, size, size, device=device)
    targets = torch.randint(0, 10, (args.batch,), device=device)
    layer = model.get_submodule(find_target_layer(model, inputs))
    floor = Floor(model, layer)
    methods = ("saliency", "grad_cam")

    ours, reference = explain(model, inputs, targets, layer, methods), floor(inputs, targets)
    same = all(torch.allclose(ours[m], reference[m], rtol=1e-4, atol=1e-6) for m in methods)
    print(f"model={args.model} probe={tuple(inputs.shape)} device={device} maps equal to the floor's: {same}")
    samples = interleaved(
        {"floor": lambda: floor(inputs, targets), "explain": lambda: explain(model, inputs, targets, layer, methods)},
        repeats,
        device,
    )
    return report(f"explain vs floor ({args.model}, {tuple(inputs.shape)}, {device})", samples, baseline="floor")


if __name__ == "__main__":
    main()
