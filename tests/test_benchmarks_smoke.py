"""Every benchmark script runs end to end (tiny sizes) and prints well-formed ratios.

No timing is asserted: timing goals are shown by running the scripts, see benchmarks/README.md.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RATIO_LINE = re.compile(r"^ratio (.+) = (\d+\.\d{3})x$", re.MULTILINE)

RUNS = {
    "bench_dashboard": ["--quick"],
    "bench_floor": ["--quick", "--model", "digits", "--batch", "2", "--repeats", "2"],
    "bench_peers": ["--quick", "--model", "digits", "--batch", "2", "--repeats", "2"],
    "bench_memory": ["--quick", "--models", "digits,synthetic"],
    "bench_scale": ["--quick", "--batch", "1", "--size", "32", "--repeats", "1"],
    "bench_text_event": ["--quick"],
    "bench_training_overhead": ["--quick", "--workload", "synthetic"],
}


@pytest.fixture(scope="module")
def benchmarks():
    sys.path.insert(0, str(BENCHMARKS))
    yield lambda name: importlib.import_module(name)
    sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def restored_globals():
    """The scripts set threads, seeds and logging levels for a process of their own; undo that here."""
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    loggers = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    torch.set_num_threads(threads)
    torch.random.set_rng_state(rng)
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_runs_and_prints_ratios(name, benchmarks, restored_globals, capsys):
    ratios = benchmarks(name).main(RUNS[name])
    printed = capsys.readouterr().out
    lines = RATIO_LINE.findall(printed)
    assert lines, f"{name} printed no 'ratio ... = N.NNNx' line:\n{printed}"
    for label, value in lines:
        assert label and math.isfinite(float(value)) and float(value) > 0
    assert ratios and all(math.isfinite(v) and v > 0 for v in ratios.values())
