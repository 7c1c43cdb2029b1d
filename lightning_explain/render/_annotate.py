"""Text in the probe grids: a bar above each cell (class, confidence, right or wrong) and the picture's header.

Drawn with :mod:`lightning_explain.render._font` on the grid's device; no font package, no host round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lightning_explain.render import _font
from lightning_explain.render._layout import Layout

RIGHT, WRONG, UNKNOWN = (0.15, 0.62, 0.25), (0.80, 0.15, 0.15), (0.35, 0.35, 0.38)
"""The bar's colour: the prediction is right, wrong, or there is no label to tell."""
MARGIN = 4
"""Pixels of space around text."""


def fit_scale(width: int, chars: int, *, room: int = 0, largest: int | None = None) -> int:
    """The largest text scale (1 = 7-pixel letters) at which ``chars`` characters plus ``room`` pixels fit in ``width``.

    ``largest`` defaults to ``max(2, width // 150)``, so letters grow with wide cells (large inputs), whose
    picture TensorBoard shrinks to its card's width.
    """
    largest = largest or max(2, width // 150)
    for scale in range(largest, 1, -1):
        if _font.text_width(chars, scale) + room + 2 * MARGIN <= width:
            return scale
    return 1


def stamp(canvas: Tensor, masks: Tensor, x: int, y: int, colour: Tensor) -> None:
    """Paint the True pixels of ``masks`` (N, h, w) in ``colour`` (3,) onto ``canvas`` (N, H, W, 3) at (x, y)."""
    h = min(masks.shape[1], canvas.shape[1] - y)
    w = min(masks.shape[2], canvas.shape[2] - x)
    if h <= 0 or w <= 0:
        return
    region = canvas[:, y : y + h, x : x + w]
    region.copy_(torch.where(masks[:, :h, :w, None], colour, region))


def _bytes(colour: Sequence[float] | Tensor, device: torch.device) -> Tensor:
    return (torch.as_tensor(colour, dtype=torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).to(device)


def sample_labels(samples: dict[str, list | None], n: int) -> list[str] | None:
    """Each sample's bar text from its outcomes: ``LABEL 3 PRED 8 71%`` (or ``PRED 8 71%`` without labels)."""
    target, predicted, confidence = samples.get("target"), samples.get("predicted"), samples.get("confidence")
    if predicted is None:
        return None if target is None else [f"LABEL {t}" for t in target]
    words = [f"PRED {p} {round(100 * c)}%" for p, c in zip(predicted, confidence or [0.0] * n, strict=True)]
    return words if target is None else [f"LABEL {t} {w}" for t, w in zip(target, words, strict=True)]


def bar_height(scale: int) -> int:
    """The height of a label bar whose text is drawn at ``scale``."""
    return _font.GLYPH_HEIGHT * scale + 2 * MARGIN


def bar_colours(n: int, correct: Tensor | None, device: torch.device | str = "cpu") -> Tensor:
    """Each sample's bar colour (N, 3) as bytes: green where ``correct``, red where not, grey without it."""
    if correct is None:
        return _bytes(torch.tensor([UNKNOWN] * n), device)
    return _bytes(torch.tensor([WRONG, RIGHT])[correct.long().cpu()], device)


def stamp_labels(image: Tensor, layout: Layout, lines: Sequence[str], scale: int) -> None:
    """Write each sample's text in white on its bar, :data:`MARGIN` pixels in from the cell's top left.

    The bar's top row and the row below the text stay free, so its colour can be read at its edges. All
    samples are written in one operation, through a view of the picture as (row, y, column, x, RGB).
    """
    masks = _font.text_masks(list(lines), scale, image.device)
    filler = layout.nrows * layout.ncols - layout.n
    if filler:
        masks = torch.cat([masks, masks.new_zeros((filler, *masks.shape[1:]))])
    th, tw = masks.shape[1], min(masks.shape[2], layout.cell_w - 2 * MARGIN)
    pitch_y, pitch_x = layout.cell_h + 2 * layout.pad, layout.cell_w + 2 * layout.pad
    grid = image[layout.top_h :].view(layout.nrows, pitch_y, layout.ncols, pitch_x, 3)
    y, x = layout.pad + MARGIN, layout.pad + MARGIN
    region = grid[:, y : y + th, :, x : x + tw]
    masks = masks[:, :, :tw].view(layout.nrows, layout.ncols, th, tw).permute(0, 2, 1, 3)
    region.copy_(torch.where(masks[..., None], _bytes((1.0, 1.0, 1.0), image.device), region))


def header(
    width: int,
    title: str | None,
    scale: str | float,
    colorize: Callable[[Tensor, str], Tensor],
    colormap: str,
    device: torch.device | None = None,
) -> Tensor:
    """The picture's header (h, width, 3): ``title``, then the colour bar and what its ends mean.

    A title too long for one line of 14-pixel letters is split at its first double space into two lines.

    ``scale="per_image"``: each map runs from its own minimum to its maximum. A number: the colours run
    from 0 to that value, and brighter values are clipped (``+``).
    """
    device = device or torch.device("cpu")
    if scale == "per_image":
        low, high = "EACH MAP: MIN", "MAX"
    else:
        low, high = "FIXED: 0", f"{float(scale):.3g}+".upper()
    rows = [title] if title else []
    if title and "  " in title and fit_scale(width, len(title), largest=2) < 2:
        rows = title.split("  ", 1)  # too long for one line of large letters: the second part goes below
    row_scales = [fit_scale(width, len(row)) for row in rows]
    bar_scale = fit_scale(width, len(low) + len(high) + 2, room=64)
    heights = [_font.GLYPH_HEIGHT * s for s in [*row_scales, bar_scale]]
    canvas = torch.full((1, MARGIN + sum(h + MARGIN for h in heights), width, 3), 255, dtype=torch.uint8)
    canvas = canvas.to(device)
    black = _bytes((0.0, 0.0, 0.0), device)
    y = MARGIN
    for row, row_scale, height in zip(rows, row_scales, heights, strict=False):
        stamp(canvas, _font.text_masks([row.strip()], row_scale, device), MARGIN, y, black)
        y += height + MARGIN
    line = heights[-1]
    gap = _font.ADVANCE * bar_scale
    low_w, high_w = _font.text_width(len(low), bar_scale), _font.text_width(len(high), bar_scale)
    bar_w = max(16, min(256, width - 2 * MARGIN - low_w - high_w - 2 * gap))
    x = MARGIN
    stamp(canvas, _font.text_masks([low], bar_scale, device), x, y, black)
    x += low_w + gap
    ramp = torch.linspace(0, 1, bar_w, device=device)[None, None].expand(1, line, bar_w)
    colours = _bytes(colorize(ramp, colormap)[0].permute(1, 2, 0), device)[:, : max(0, width - x)]
    canvas[0, y : y + line, x : x + colours.shape[1]] = colours
    x += bar_w + gap
    stamp(canvas, _font.text_masks([high], bar_scale, device), x, y, black)
    return canvas[0]
