"""A table of a run's scalars: first, last, min and max (with their steps) and the number of points."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from lightning_explain.cli._runs import RunData, match_tags

# Shown when no --tag is given: the explanation, overfitting and loss/accuracy scalars, and total gradient norms.
DEFAULT_TAG_PATTERNS = (
    "explain/*",
    "overfit/*",
    "grad_norm/*/total",
    "*loss*",
    "*acc*",
)

CSV_COLUMNS = ("run", "tag", "points", "first", "last", "min", "min_step", "max", "max_step")


@dataclass(frozen=True)
class ScalarSummary:
    """Summary of one scalar series; ``first``/``last`` are the values at the smallest/largest step."""

    tag: str
    points: int
    first: float
    last: float
    min: float
    min_step: int
    max: float
    max_step: int


def summarize(data: RunData, patterns: tuple[str, ...] | list[str] = DEFAULT_TAG_PATTERNS) -> list[ScalarSummary]:
    """One ``ScalarSummary`` per scalar tag that matches a glob in ``patterns``, sorted by tag.

    NaN values count as points but never as the min or the max; min and max report the first step they occur at.
    """
    rows = []
    for tag in match_tags(data.scalars, patterns):
        series = data.scalar_series(tag)
        finite = [(s, v) for s, v in series if v == v] or series
        min_step, min_value = min(finite, key=lambda sv: (sv[1], sv[0]))
        max_step, max_value = max(finite, key=lambda sv: (sv[1], -sv[0]))
        rows.append(
            ScalarSummary(
                tag=tag,
                points=len(series),
                first=series[0][1],
                last=series[-1][1],
                min=min_value,
                min_step=min_step,
                max=max_value,
                max_step=max_step,
            )
        )
    return rows


def _fmt(value: float) -> str:
    """A value for people: 4 significant digits."""
    return f"{value:.4g}"


def format_csv(tables: list[tuple[str, list[ScalarSummary]]]) -> str:
    """``(run name, rows)`` pairs as one CSV with a header and a ``run`` column; values at full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run, rows in tables:
        for r in rows:
            writer.writerow([run, r.tag, r.points, r.first, r.last, r.min, r.min_step, r.max, r.max_step])
    return buffer.getvalue()


def format_table(rows: list[ScalarSummary], fmt: str = "text") -> str:
    """The rows as ``"text"`` (aligned columns) or ``"markdown"`` (a pipe table), values to 4 significant digits."""
    header = ["tag", "points", "first", "last", "min (step)", "max (step)"]
    body = [
        [
            r.tag,
            str(r.points),
            _fmt(r.first),
            _fmt(r.last),
            f"{_fmt(r.min)} ({r.min_step})",
            f"{_fmt(r.max)} ({r.max_step})",
        ]
        for r in rows
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * 5) + "|"]
        lines += ["| " + " | ".join([f"`{row[0]}`"] + row[1:]) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, ["-" * w for w in widths], *body]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
