"""Pictures of token attributions: each text's tokens drawn as words on a background shaded by their attribution.

One block per text, its tokens laid out left to right and wrapped at the picture's width, each token's box coloured
by its value: orange for positive, blue for negative (two colours, from white at 0), each text scaled to its own
largest magnitude so the tokens a text leans on stand out whatever the scale. A tag at the end of each text gives
its outcome (true and predicted label), green where right and red where wrong. Drawn on the CPU with the package's
bitmap font (:mod:`lightning_explain.render._font`): tokens keep their case; characters outside printable ASCII
are drawn as ``?``.

Example:
    >>> image, boxes = render_token_rows([["the", "movie", "was", "great"]], torch.tensor([[0.0, 0.1, 0.0, 0.9]]))
    >>> image.dtype, len(boxes)
    (torch.uint8, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_explain.render import _font
from lightning_explain.render._annotate import RIGHT, UNKNOWN, WRONG

POSITIVE = (0.894, 0.353, 0.194)
"""A positive attribution's colour at full strength (the orange of the heatmaps)."""
NEGATIVE = (0.173, 0.449, 0.758)
"""A negative attribution's colour at full strength (blue)."""
INK = (0.1, 0.1, 0.1)
MUTED = (0.45, 0.45, 0.48)
PAD_X, PAD_Y, GAP, MARGIN = 2, 2, 2, 6


def token_colours(values: Tensor, scale: Tensor) -> Tensor:
    """Background colours (..., 3) in [0, 1]: white at 0, :data:`POSITIVE` / :data:`NEGATIVE` at ``|value| = scale``."""
    strength = (values.float().abs() / scale.clamp_min(torch.finfo(torch.float32).tiny)).clamp(0, 1)[..., None]
    colour = torch.where(values[..., None] >= 0, torch.tensor(POSITIVE), torch.tensor(NEGATIVE))
    return 1 - strength * (1 - colour)


def render_token_rows(
    tokens: Sequence[Sequence[str]],
    values: Tensor,
    *,
    real: Tensor | None = None,
    labels: Sequence[str] | None = None,
    correct: Tensor | None = None,
    title: str | None = None,
    max_tokens: int = 64,
    width: int = 320,
    scale: int = 1,
) -> tuple[Tensor, list[list[int]]]:
    """One picture of a probe of texts and their token attributions.

    Args:
        tokens: per text, one string per position (N lists of T strings).
        values: the attributions (N, T); signed values use two colours.
        real: bool (N, T): the positions to draw (padding is left out); ``None`` = all.
        labels: per text, the tag drawn after its last token (e.g. ``"true pos  pred pos 97%"``).
        correct: bool (N,): whether each text is predicted right (the tag's colour; grey without it).
        title: the header's first line (e.g. the method and the step).
        max_tokens: the most tokens drawn per text (the first ones; a ``+K`` box says how many more there are).
        width: the picture's width in pixels; texts wrap at it.
        scale: the tokens' text scale (1 = 7-pixel letters).

    Returns:
        An ``uint8`` image (H, W, 3) on the CPU and each text's block as ``[x, y, width, height]``, in text order.
    """
    values = torch.nan_to_num(values.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    n, length = values.shape if values.ndim == 2 else (0, 0)
    if values.ndim != 2 or n == 0 or len(tokens) != n or any(len(row) != length for row in tokens):
        raise ValueError(
            f"values must be (N, T) with one string per position in tokens; got values {tuple(values.shape)} "
            f"and {len(tokens)} token lists."
        )
    real = torch.ones(n, length, dtype=torch.bool) if real is None else real.detach().cpu().bool()
    shown = [real[i].nonzero().flatten().tolist() for i in range(n)]
    hidden = [max(0, len(rows) - max_tokens) for rows in shown]
    shown = [rows[:max_tokens] for rows in shown]
    scales = torch.stack([values[i, rows].abs().max() if rows else torch.tensor(0.0) for i, rows in enumerate(shown)])
    colours = token_colours(values, scales[:, None])

    line_h = _font.TALL_HEIGHT * scale + 2 * PAD_Y
    boxes: list[tuple[int, int, int, str, tuple, tuple]] = []  # (sample, x, y, text, background, ink)
    blocks: list[list[int]] = []
    header_rows, header_h = _header(title, width)
    y = header_h + MARGIN
    for i in range(n):
        top = y
        x = MARGIN
        words = [(tokens[i][t], tuple(colours[i, t].tolist())) for t in shown[i]]
        if hidden[i]:
            words.append((f"+{hidden[i]}", (1.0, 1.0, 1.0)))
        items = [(f"{i}:", (1.0, 1.0, 1.0), MUTED)] + [(w or " ", bg, _ink(bg)) for w, bg in words]
        if labels is not None:
            tag = RIGHT if correct is not None and bool(correct[i]) else UNKNOWN if correct is None else WRONG
            items.append((labels[i], tag, (1.0, 1.0, 1.0)))
        for text, background, ink in items:
            box_w = _font.text_width(len(text), scale) + 2 * PAD_X
            if x > MARGIN and x + box_w > width - MARGIN:
                x, y = MARGIN, y + line_h + GAP
            boxes.append((x, y, box_w, text, background, ink))
            x += box_w + GAP
        y += line_h + GAP
        blocks.append([0, top - GAP, width, y - top + GAP])
        y += MARGIN
    canvas = torch.ones(y, width, 3)
    for row_y, row in header_rows:
        _stamp(canvas, row, MARGIN, row_y, INK)
    _legend(canvas, header_h - LEGEND_H - MARGIN)
    for (_, top, _, height), following in zip(blocks[:-1], blocks[1:], strict=True):
        canvas[(top + height + following[1]) // 2, MARGIN : width - MARGIN] = 0.85  # a rule between texts
    masks = _font.text_masks([text for _, _, _, text, _, _ in boxes], scale, keep_case=True)
    for (x, top, box_w, text, background, ink), mask in zip(boxes, masks, strict=True):
        right = min(x + box_w, width)
        canvas[top : top + line_h, x:right] = torch.tensor(background)
        glyphs = mask[:, : _font.text_width(len(text), scale)]
        _stamp(canvas, glyphs, x + PAD_X, top + PAD_Y, ink)
    image = (canvas.clamp(0, 1) * 255).round().to(torch.uint8)
    return image, blocks


def _ink(background: tuple[float, ...]) -> tuple[float, float, float]:
    """Dark text on light boxes, white text on dark ones."""
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return INK if luminance > 0.55 else (1.0, 1.0, 1.0)


def _stamp(canvas: Tensor, mask: Tensor, x: int, y: int, colour: tuple[float, ...]) -> None:
    """Paint ``mask``'s True pixels in ``colour`` onto ``canvas`` (H, W, 3) at (x, y), clipped."""
    h = min(mask.shape[0], canvas.shape[0] - y)
    w = min(mask.shape[1], canvas.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    region = canvas[y : y + h, x : x + w]
    region[mask[:h, :w]] = torch.tensor(colour, dtype=canvas.dtype)


LEGEND_H = _font.TALL_HEIGHT + 2 * PAD_Y
LEGEND_WORDS = ("- most", "0", "most +", "scaled per text")


def _header(title: str | None, width: int) -> tuple[list[tuple[int, Tensor]], int]:
    """The title's rows (their y and glyph masks) and the header's height, the legend's line included."""
    rows: list[tuple[int, Tensor]] = []
    y = MARGIN
    if title:
        scale = 2 if _font.text_width(len(title), 2) <= width - 2 * MARGIN else 1
        rows.append((y, _font.text_masks([title], scale, keep_case=True)[0]))
        y += _font.TALL_HEIGHT * scale + MARGIN
    return rows, y + LEGEND_H + MARGIN


def _legend(canvas: Tensor, y: int) -> None:
    """``- most [blue ... white ... orange] most +  scaled per text``: what the colours mean, on one line."""
    low, zero, high, note = (_font.text_masks([w], keep_case=True)[0] for w in LEGEND_WORDS)
    x = MARGIN
    _stamp(canvas, low, x, y + PAD_Y, INK)
    x += low.shape[1] + 4
    ramp = torch.linspace(-1, 1, 96)
    canvas[y : y + LEGEND_H, x : x + 96] = token_colours(ramp, torch.tensor(1.0))[None]
    _stamp(canvas, zero, x + 48 - zero.shape[1] // 2, y + PAD_Y, INK)
    x += 96 + 4
    _stamp(canvas, high, x, y + PAD_Y, INK)
    _stamp(canvas, note, x + high.shape[1] + 12, y + PAD_Y, MUTED)
