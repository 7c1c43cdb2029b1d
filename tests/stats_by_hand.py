"""Reference statistics written out by hand, for the tests of the overfitting signals and detector."""

from __future__ import annotations

import math


def paired_t(losses: list[float], reference: list[float]) -> float:
    """The paired t statistic of ``losses`` against ``reference``: mean difference over its standard error."""
    differences = [a - b for a, b in zip(losses, reference, strict=True)]
    n = len(differences)
    mean = sum(differences) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    return mean / (std / math.sqrt(n))
