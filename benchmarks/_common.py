"""Shared benchmark plumbing: arguments, device sync, interleaved timing, peak memory, the event.

Timing is interleaved: after a warm-up, every round runs each contender once, in an order
that alternates between rounds (ABAB..., then BABA...), so slow drifts of a shared machine
hit all contenders alike; we report medians and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_X.py` from anywhere
    sys.path.insert(0, str(ROOT))

from lightning_explain.callbacks._log_writer import PNG_METADATA_KEY, LogWriter  # noqa: E402
from lightning_explain.callbacks.probe import Probe  # noqa: E402
from lightning_explain.render.png import encode_png  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default: 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per contender")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: tiny sizes, few repeats")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Fix threads and seeds; return the device (an error when cuda is asked for and missing)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch.cuda.is_available() is False.")
    return device


def device_name(device: torch.device) -> str:
    """A human-readable name of the device, for the results table."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each contender, measured in alternating order after ``warmup`` calls each."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            sync(device)
            start = time.perf_counter()
            contenders[name]()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def report(title: str, samples: dict[str, list[float]], baseline: str, unit: float = 1e3) -> dict[str, float]:
    """Print medians and ``ratio name/baseline = ...x`` lines; return the ratios."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\n## {title}")
    print(f"{'contender':<40} {'median ms':>10} {'ratio':>7}   (n={len(samples[baseline])} each)")
    ratios = {}
    for name, median in medians.items():
        ratios[name] = median / medians[baseline]
        print(f"{name:<40} {median * unit:>10.2f} {ratios[name]:>6.3f}x")
    for name, ratio in ratios.items():
        if name != baseline:
            print(f"ratio {name} / {baseline} = {ratio:.3f}x")
    return ratios


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[int, int]:
    """Extra peak bytes while ``fn()`` runs, above what was allocated before: ``(tensors, python)``.

    Tensors: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the running sum of the
    allocator's allocations and frees recorded by the PyTorch profiler (tracemalloc cannot see
    torch's allocator). Python: tracemalloc's peak (NumPy arrays, PNG bytes, Python objects).
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        tracemalloc.start()
        fn()
        sync(device)
        python_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return torch.cuda.max_memory_allocated(device) - before, python_peak
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    tracemalloc.start()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    allocations: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    current = peak = 0
    for _, size in sorted(allocations):
        current += size
        peak = max(peak, current)
    return peak, python_peak


def load_demo():
    """The README demo's module (``examples/digits.py``): its DigitsCNN and DigitsDataModule."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_demo", ROOT / "examples" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forward_backward(model: nn.Module, inputs: Tensor, targets: Tensor) -> Callable[[], None]:
    """One training-style forward and backward of a batch (cross-entropy, gradients into ``.grad``)."""

    def run() -> None:
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
        model.zero_grad(set_to_none=True)

    return run


class EncodingWriter(LogWriter):
    """A writer that does everything an event's logging does except the file write: it PNG-encodes images."""

    def __init__(self) -> None:
        super().__init__([])
        self.encoded_bytes = 0

    @property
    def can_log_images(self) -> bool:
        return True

    def image(self, tag: str, image: np.ndarray, step: int, *, metadata: dict | None = None) -> None:
        text = {PNG_METADATA_KEY: json.dumps(metadata, separators=(",", ":"))} if metadata else None
        self.encoded_bytes += len(encode_png(image, text=text))

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        pass


def event_runner(model: nn.Module, inputs: Tensor, targets: Tensor, methods=("saliency", "grad_cam")):
    """A callable that runs one ExplainCallback event on ``(inputs, targets)``, the callback's own code.

    Explanation, statistics, rendering, one host transfer and PNG encoding, as in
    ``ExplainCallback._log_event``; only the TensorBoard file write is left out.
    """
    from lightning_explain import ExplainCallback

    callback = ExplainCallback(methods=methods)
    callback._device_probe = Probe(inputs, targets)
    callback._target_mode = "label"
    callback._writer = EncodingWriter()
    step = [0]

    def run() -> None:
        with torch.no_grad():
            explanation = callback._explain(model)
            if callback._layer_module is None and explanation.layer_name is not None:
                callback._layer_module = model.get_submodule(explanation.layer_name)
            callback._log_event(model, explanation, step[0])
        step[0] += 1

    return run


def megabytes(n: int) -> str:
    """Bytes as MB with one decimal."""
    return f"{n / 2**20:.1f} MB"
