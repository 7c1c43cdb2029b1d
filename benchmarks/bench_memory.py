"""Goal 5: the extra peak memory of an explanation event, against one forward+backward of the probe.

For each model, three measurements of extra peak memory above what was allocated before:
one training-style forward+backward of the probe batch (gradients into ``.grad``), the
explanation pass alone (``explain``), and a whole ExplainCallback event (explanation,
statistics, rendering, the host transfer, PNG encoding; no file write). Tensor memory comes
from the PyTorch profiler's allocation records on the CPU (tracemalloc cannot see torch's
allocator) and from ``torch.cuda.max_memory_allocated`` on CUDA; Python-side memory (NumPy,
PNG bytes) from tracemalloc.

    python benchmarks/bench_memory.py [--models digits,synthetic,resnet18] [--device cuda] [--quick]
"""

from __future__ import annotations

import torch
from _common import event_runner, forward_backward, megabytes, parser, peak_memory, setup
from models import MODEL_NAMES, build

from lightning_explain.attribution import explain, find_target_layer


def measure(name: str, batch: int, size: int | None, device: torch.device) -> dict[str, float]:
    """Peak extra memory of forward+backward, explain and an event for one model; prints a table."""
    net, channels, default_size = build(name)
    size = size or default_size
    model = net.to(device).eval()
    inputs = torch.randn(batch, channels, size, size, device=device)
    targets = torch.randint(0, 10, (batch,), device=device)
    layer = model.get_submodule(find_target_layer(model, inputs))
    runs = {
        "forward+backward": forward_backward(model, inputs, targets),
        "explain": lambda: explain(model, inputs, targets, layer),
        "event": event_runner(model, inputs, targets),
    }
    for run in runs.values():  # warm-up: lazy initialisation is not what we measure
        run()
    peaks = {label: peak_memory(run, device) for label, run in runs.items()}
    reference = peaks["forward+backward"][0]
    print(f"\n## extra peak memory: {name}, probe {tuple(inputs.shape)}, {device}")
    print(f"{'pass':<20} {'tensors':>10} {'python':>10} {'ratio':>7}")
    ratios = {}
    for label, (tensors, python) in peaks.items():
        ratios[f"{name}/{label}"] = (tensors + python) / reference
        print(f"{label:<20} {megabytes(tensors):>10} {megabytes(python):>10} {ratios[f'{name}/{label}']:>6.2f}x")
    for label in ("explain", "event"):
        print(f"ratio {name}/{label} / forward+backward = {ratios[f'{name}/{label}']:.3f}x")
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="digits,synthetic,resnet18", help=f"comma-separated from {MODEL_NAMES}")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    device = setup(args)
    ratios: dict[str, float] = {}
    for name in args.models.split(","):
        ratios.update(measure(name, 2 if args.quick else args.batch, 32 if args.quick else None, device))
    return ratios


if __name__ == "__main__":
    main()
