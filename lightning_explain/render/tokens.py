"""Pictures of token attributions: each text's tokens drawn as words on a background shaded by their attribution.

One block per text, its tokens laid out left to right and wrapped at the picture's width, each token's box coloured
by its value: orange for positive, blue for negative (two colours, from white at 0), each text scaled to its own
largest magnitude so the tokens a text leans on stand out whatever the scale. A tag at the end of each text gives
its outcome (true and predicted label), green where right and red where wrong. Drawn on the CPU with the package's
bitmap font (:mod:`lightning_explain.render._font`): tokens keep their case; characters outside printable ASCII
are drawn as ``?``; the pieces of a split word touch. The boxes are painted with NumPy (a few microseconds each).

Example:
    >>> image, boxes = render_token_rows([["the", "movie", "was", "great"]], torch.tensor([[0.0, 0.1, 0.0, 0.9]]))
    >>> image.dtype, len(boxes)
    (torch.uint8, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    joins: Sequence[Sequence[bool]] | None = None,
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
        joins: per text and position, whether the token continues the word before it (a word piece): its box is
            drawn touching the previous one, so a split word reads as one; ``None`` = every token a word.
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
    scales = values.abs().masked_fill(~real, 0).amax(dim=1)
    colours = _bytes(token_colours(values, scales[:, None])).numpy()  # (N, T, 3)
    dark = colours.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) > 0.55 * 255
    white, muted, ink = (_bytes(torch.tensor(c)).numpy() for c in ((1.0, 1.0, 1.0), MUTED, INK))

    line_h = _font.TALL_HEIGHT * scale + 2 * PAD_Y
    boxes: list[tuple[int, int, int, str, np.ndarray, np.ndarray]] = []  # (x, y, width, text, background, ink)
    blocks: list[list[int]] = []
    header_rows, header_h = _header(title, width)
    y = header_h + MARGIN
    for i in range(n):
        top, x = y, MARGIN
        items = [(f"{i}:", white, muted, False)]
        for t in shown[i]:
            joined = bool(joins and joins[i][t])
            items.append((tokens[i][t] or " ", colours[i, t], ink if dark[i, t] else white, joined))
        if hidden[i]:
            items.append((f"+{hidden[i]}", white, ink, False))
        if labels is not None:
            tag = RIGHT if correct is not None and bool(correct[i]) else UNKNOWN if correct is None else WRONG
            items.append((labels[i], _bytes(torch.tensor(tag)).numpy(), white, False))
        for k, (text, background, text_ink, joined) in enumerate(items):
            box_w = _font.text_width(len(text), scale) + 2 * PAD_X
            if joined and k > 1:
                x -= GAP + 2 * PAD_X - 1  # a word piece's letters follow the piece before it, one column apart
            if x > MARGIN and x + box_w > width - MARGIN:
                x, y = MARGIN, y + line_h + GAP
            boxes.append((x, y, box_w, text, background, text_ink))
            x += box_w + GAP
        y += line_h + GAP
        blocks.append([0, top - GAP, width, y - top + GAP])
        y += MARGIN
    canvas = np.full((y, width, 3), 255, dtype=np.uint8)
    for row_y, row in header_rows:
        _stamp(canvas, row.numpy(), MARGIN, row_y, ink)
    _legend(canvas, header_h - LEGEND_H - MARGIN)
    for (_, top, _, height), following in zip(blocks[:-1], blocks[1:], strict=True):
        canvas[(top + height + following[1]) // 2, MARGIN : width - MARGIN] = 217  # a rule between texts
    masks = _font.text_masks([text for _, _, _, text, _, _ in boxes], scale, keep_case=True).numpy()
    for x, top, box_w, _, background, _ in boxes:  # every box first: a word piece's box overlaps its neighbour's
        canvas[top : top + line_h, x : min(x + box_w, width)] = background
    for (x, top, _, text, _, text_ink), mask in zip(boxes, masks, strict=True):
        _stamp(canvas, mask[:, : _font.text_width(len(text), scale)], x + PAD_X, top + PAD_Y, text_ink)
    return torch.from_numpy(canvas), blocks


def _bytes(colour: Tensor) -> Tensor:
    """Colours in [0, 1] as bytes."""
    return (colour.clamp(0, 1) * 255).round().to(torch.uint8)


def _stamp(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, colour: np.ndarray) -> None:
    """Paint ``mask``'s True pixels in ``colour`` onto ``canvas`` (H, W, 3) at (x, y), clipped."""
    h = min(mask.shape[0], canvas.shape[0] - y)
    w = min(mask.shape[1], canvas.shape[1] - x)
    if h > 0 and w > 0:
        canvas[y : y + h, x : x + w][mask[:h, :w]] = colour


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


def _legend(canvas: np.ndarray, y: int) -> None:
    """``- most [blue ... white ... orange] most +  scaled per text``: what the colours mean, on one line."""
    low, zero, high, note = (_font.text_masks([w], keep_case=True)[0].numpy() for w in LEGEND_WORDS)
    ink, muted = _bytes(torch.tensor(INK)).numpy(), _bytes(torch.tensor(MUTED)).numpy()
    x = MARGIN
    _stamp(canvas, low, x, y + PAD_Y, ink)
    x += low.shape[1] + 4
    ramp = torch.linspace(-1, 1, 96)
    canvas[y : y + LEGEND_H, x : x + 96] = _bytes(token_colours(ramp, torch.tensor(1.0))).numpy()[None]
    _stamp(canvas, zero, x + 48 - zero.shape[1] // 2, y + PAD_Y, ink)
    x += 96 + 4
    _stamp(canvas, high, x, y + PAD_Y, ink)
    _stamp(canvas, note, x + high.shape[1] + 12, y + PAD_Y, muted)
