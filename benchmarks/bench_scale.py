"""Goal 6: per-event time and memory at ImageNet scale: ResNet-18 on a 16x3x224x224 probe.

Interleaved timings of a training-style forward+backward of the probe (the reference), the
explanation pass (``explain``: saliency and Grad-CAM from one pass) and a whole
ExplainCallback event (explanation, statistics, rendering, host transfer, PNG encoding),
then their extra peak memory.

    python benchmarks/bench_scale.py [--batch 16] [--size 224] [--device cuda] [--quick]
"""

from __future__ import annotations

import torch
from _common import (
    device_name,
    event_runner,
    forward_backward,
    interleaved,
    megabytes,
    parser,
    peak_memory,
    report,
    setup,
)
from models import ResNet18

from lightning_explain.attribution import explain


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None, help="probe size (default: 16; 2 with --quick)")
    p.add_argument("--size", type=int, default=None, help="input side (default: 224; 64 with --quick)")
    args = p.parse_args(argv)
    device = setup(args)
    batch = args.batch or (2 if args.quick else 16)
    size = args.size or (64 if args.quick else 224)
    repeats = args.repeats or (2 if args.quick else 5)
    model = ResNet18().to(device).eval()
    inputs = torch.randn(batch, 3, size, size, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    runs = {
        "forward+backward": forward_backward(model, inputs, targets),
        "explain": lambda: explain(model, inputs, targets, model.layer4),
        "event": event_runner(model, inputs, targets),
    }
    print(
        f"ResNet-18 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters), "
        f"probe {tuple(inputs.shape)}, {device_name(device)}"
    )
    samples = interleaved(runs, repeats, device, warmup=1)
    ratios = report(f"per-event time at scale ({tuple(inputs.shape)}, {device})", samples, "forward+backward")
    print(f"\n{'pass':<20} {'tensors':>10} {'python':>10}")
    for label, run in runs.items():
        tensors, python = peak_memory(run, device)
        ratios[f"memory {label}"] = tensors + python
        print(f"{label:<20} {megabytes(tensors):>10} {megabytes(python):>10}")
    base = ratios["memory forward+backward"]
    for label in ("explain", "event"):
        print(f"ratio memory {label} / forward+backward = {ratios[f'memory {label}'] / base:.3f}x")
    return ratios


if __name__ == "__main__":
    main()
