"""benchmarks/quality_table.py runs end to end (``--quick``, the shortcut run only) and prints its table and ratio.

No number is asserted beyond being well formed: the script's results are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RATIO_LINE = re.compile(r"^ratio (.+) = (\d+\.\d{3})x$", re.MULTILINE)
ROW = re.compile(r"^\| shortcut, (validation|training) probe .* \| (grad_cam|saliency|random) \| 0 → \d+ \|", re.M)


def test_quality_table_quick_prints_a_row_per_map_and_probe_and_the_cost_ratio(capsys):
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    sys.path.insert(0, str(BENCHMARKS))
    try:
        ratios = importlib.import_module("quality_table").main(["--quick", "--runs", "shortcut"])
    finally:
        sys.path.remove(str(BENCHMARKS))
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    printed = capsys.readouterr().out
    assert len(ROW.findall(printed)) == 6, printed
    lines = RATIO_LINE.findall(printed)
    assert [label for label, _ in lines] == ["quality on / quality off"], printed
    assert ratios and all(math.isfinite(v) and v > 0 for v in ratios.values())
