"""What the dashboard's page gets for one run: image steps with each grid's cell layout, scalars and alerts.

The same JSON feeds the Explain tab (the ``/run`` route) and the report (embedded in the HTML file), so both
show the same thing. A grid PNG that carries the ``lightning-explain`` text chunk (see
:func:`lightning_explain.render.png.png_text`) gets its cells and per-sample outcomes; any other image is one
whole picture (``cells`` is ``None``). Unknown metadata keys are ignored.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable

from lightning_explain.cli._runs import RunData
from lightning_explain.render.png import png_text

METADATA_KEY = "lightning-explain"
GRID_FORMAT = "lightning-explain/grid"
SAMPLE_FIELDS = ("target", "predicted", "confidence", "correct", "explained", "area")
ALERT_SUFFIX = "/alert"


def grid_layout(png: bytes) -> dict | None:
    """A grid PNG's layout: ``{"cells": [[x, y, w, h], ...], "target": ..., "predicted": ..., ...}``, or None.

    None for a PNG without a valid ``lightning-explain/grid`` chunk (older runs, other callbacks, bad JSON).
    """
    try:
        text = png_text(png).get(METADATA_KEY)
        meta = json.loads(text) if text else None
    except (ValueError, TypeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != GRID_FORMAT or not isinstance(meta.get("cells"), list):
        return None
    cells: list[list[int] | None] = [None] * len(meta["cells"])
    for cell in meta["cells"]:
        box = cell.get("box") if isinstance(cell, dict) else None
        sample = cell.get("sample") if isinstance(cell, dict) else None
        if isinstance(sample, int) and 0 <= sample < len(cells) and isinstance(box, list) and len(box) == 4:
            cells[sample] = [int(v) for v in box]
    layout: dict = {"cells": cells}
    for key in SAMPLE_FIELDS:
        values = meta.get(key)
        layout[key] = values if isinstance(values, list) and len(values) == len(cells) else None
    return layout


def png_size(png: bytes) -> list[int] | None:
    """``[width, height]`` from a PNG's header, or None when ``png`` is not a PNG."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    return list(struct.unpack(">II", png[16:24]))


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if math.isfinite(value) else None


def alert_steps(series: list[tuple[int, float]]) -> list[int]:
    """The steps where an alert series (0 / 1) turns on: the first step of each run of values above 0.5."""
    fired, active = [], False
    for step, value in series:
        on = value == value and value > 0.5
        if on and not active:
            fired.append(step)
        active = on
    return fired


def image_index(images: dict[int, bytes], steps: Iterable[int] | None = None, cache: dict | None = None) -> dict:
    """One image tag's entry: its steps, size, cell layout (of the first step) and per-step sample outcomes.

    ``frames[i]`` holds the outcomes at ``steps[i]`` (and ``cells`` when they differ from the tag's).
    ``cache`` maps PNG bytes to their parsed layout, kept between calls so each PNG is parsed once.
    """
    cache = {} if cache is None else cache
    steps = sorted(images) if steps is None else sorted(steps)
    entry: dict = {"steps": steps, "size": None, "cells": None, "frames": []}
    for i, step in enumerate(steps):
        png = images[step]
        if png not in cache:
            cache[png] = grid_layout(png)
        layout = cache[png]
        if i == 0:
            entry["size"] = png_size(png)
            entry["cells"] = layout["cells"] if layout else None
        frame: dict = {}
        if layout:
            frame = {key: layout[key] for key in SAMPLE_FIELDS if layout[key] is not None}
            if layout["cells"] != entry["cells"]:
                frame["cells"] = layout["cells"]
        elif entry["cells"] is not None:
            frame["cells"] = None
        entry["frames"].append(frame)
    return entry


def run_index(
    name: str, data: RunData, generation: int = 0, steps: dict[str, list[int]] | None = None, cache: dict | None = None
) -> dict:
    """The JSON-ready view of one run. ``steps`` chooses which steps of an image tag to list (default: all);
    ``cache`` is :func:`image_index`'s."""
    alerts = {tag: alert_steps(data.scalar_series(tag)) for tag in sorted(data.scalars) if tag.endswith(ALERT_SUFFIX)}
    return {
        "name": name,
        "generation": generation,
        "images": {tag: image_index(data.images[tag], (steps or {}).get(tag), cache) for tag in sorted(data.images)},
        "scalars": {tag: [[s, _finite(v)] for s, v in data.scalar_series(tag)] for tag in sorted(data.scalars)},
        "alerts": alerts,
    }


def run_summary(name: str, data: RunData, generation: int = 0, mtime: float = 0.0) -> dict:
    """One line of the run list: name, generation, how many image and scalar tags, the last step, and ``mtime``
    (when its newest event file was written: the page opens the newest run)."""
    last = [max(series) for series in (*data.images.values(), *data.scalars.values()) if series]
    return {
        "name": name,
        "generation": generation,
        "image_tags": len(data.images),
        "scalar_tags": len(data.scalars),
        "last_step": max(last) if last else None,
        "mtime": mtime,
    }
