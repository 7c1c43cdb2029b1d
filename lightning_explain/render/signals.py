"""Pictures of attributions for non-image inputs: a bar chart per feature, a heat strip per sequence.

Drawn with torch alone (no plotting library): labels use a built-in 3x5 pixel font. Every
function returns an ``uint8`` image (H, W, 3) on the CPU, ready for ``LogWriter.image``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_explain.render.grids import apply_colormap, scale_maps

# Each glyph: 5 rows of 3 bits, the most significant bit on the left.
_GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6), "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7),
    "F": (7, 4, 6, 4, 4), "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5), "O": (2, 5, 5, 5, 2),
    "P": (6, 5, 6, 4, 4), "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5), "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5), "Y": (5, 5, 2, 2, 2),
    "Z": (7, 1, 2, 4, 7), "_": (0, 0, 0, 0, 7), "-": (0, 0, 7, 0, 0), ".": (0, 0, 0, 0, 2), " ": (0, 0, 0, 0, 0),
    ":": (0, 2, 0, 2, 0), "+": (0, 2, 7, 2, 0), "/": (1, 1, 2, 4, 4), "(": (1, 2, 2, 2, 1), ")": (4, 2, 2, 2, 4),
    "[": (3, 2, 2, 2, 3), "]": (6, 2, 2, 2, 6), "=": (0, 7, 0, 7, 0), "?": (7, 1, 3, 0, 2),
}  # fmt: skip

TEXT_SCALE = 2
CHAR_WIDTH = 4 * TEXT_SCALE  # 3 pixels and 1 of spacing
TEXT_HEIGHT = 5 * TEXT_SCALE
_POSITIVE = (0.894, 0.353, 0.194)  # inferno's orange
_NEGATIVE = (0.173, 0.449, 0.758)  # blue
_INK = 0.15
_SIGNAL_COLOURS = ((0.2, 0.2, 0.2), (0.85, 0.33, 0.1), (0.13, 0.47, 0.71), (0.17, 0.63, 0.17))


def text_mask(text: str) -> Tensor:
    """A bool mask (10, 8 * len(text)) of ``text`` in the built-in font (upper case; unknown characters as '?')."""
    rows = []
    for char in text.upper():
        bits = _GLYPHS.get(char, _GLYPHS["?"])
        glyph = torch.tensor([[(row >> (2 - i)) & 1 for i in range(3)] + [0] for row in bits], dtype=torch.bool)
        rows.append(glyph)
    if not rows:
        return torch.zeros(TEXT_HEIGHT, 0, dtype=torch.bool)
    mask = torch.cat(rows, dim=1)
    return mask.repeat_interleave(TEXT_SCALE, 0).repeat_interleave(TEXT_SCALE, 1)


def _draw_text(canvas: Tensor, text: str, top: int, left: int, colour: float | tuple = _INK) -> None:
    """Draw ``text`` into an RGB canvas (3, H, W) in place, clipped to the canvas."""
    mask = text_mask(text)
    height = min(mask.shape[0], canvas.shape[1] - top)
    width = min(mask.shape[1], canvas.shape[2] - left)
    if height <= 0 or width <= 0:
        return
    mask = mask[:height, :width]
    region = canvas[:, top : top + height, left : left + width]
    ink = torch.as_tensor(colour, dtype=canvas.dtype).reshape(-1, 1, 1).expand(3, height, width)
    region[:, mask] = ink[:, mask]


def _format(value: float) -> str:
    return f"{value:.3g}".replace("E", "e")


def _to_uint8(canvas: Tensor) -> Tensor:
    return (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def render_feature_bars(
    attributions: Tensor,
    feature_names: Sequence[str] | None = None,
    top_k: int = 20,
    *,
    bar_width: int = 240,
    max_label_chars: int = 16,
) -> Tensor:
    """A horizontal bar chart of the ``top_k`` features with the largest attribution magnitude.

    Args:
        attributions: per-feature values (F,), or per sample (N, F), averaged over samples.
            Positive bars are orange, negative blue; the longest bar is the largest magnitude.
        feature_names: one name per feature; ``None`` = ``"f0"``, ``"f1"``, ... Names are drawn
            in upper case, cut to ``max_label_chars``.
        top_k: how many features to draw, largest magnitude first.
        bar_width: the longest bar in pixels.
        max_label_chars: the longest label.

    Returns:
        An ``uint8`` image (H, W, 3) on the CPU: one row per feature, its name, its bar, its value.

    Example:
        >>> image = render_feature_bars(saliency_maps, feature_names=columns, top_k=10)  # doctest: +SKIP
    """
    values = attributions.detach().float().cpu()
    if values.ndim == 2:
        values = values.mean(dim=0)
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"attributions must be (F,) or (N, F) with F >= 1, got shape {tuple(attributions.shape)}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}.")
    count = values.numel()
    names = [f"f{i}" for i in range(count)] if feature_names is None else [str(n) for n in feature_names]
    if len(names) != count:
        raise ValueError(f"feature_names has {len(names)} names for {count} features.")
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    order = values.abs().argsort(descending=True, stable=True)[: min(top_k, count)].tolist()
    labels = [names[i][:max_label_chars] for i in order]
    numbers = [_format(float(values[i])) for i in order]
    row, pad = TEXT_HEIGHT + 6, 6
    label_width = max(len(s) for s in labels) * CHAR_WIDTH + pad
    value_width = max(len(s) for s in numbers) * CHAR_WIDTH + pad
    height = len(order) * row + 2 * pad
    width = pad + label_width + bar_width + pad + value_width
    canvas = torch.ones(3, height, width)
    largest = float(values.abs().max())
    for position, (index, label, number) in enumerate(zip(order, labels, numbers, strict=True)):
        top = pad + position * row
        _draw_text(canvas, label, top + 3, pad)
        value = float(values[index])
        length = 0 if value == 0 else max(1, round(bar_width * abs(value) / largest))
        left = pad + label_width
        colour = torch.tensor(_POSITIVE if value >= 0 else _NEGATIVE).reshape(3, 1, 1)
        canvas[:, top + 1 : top + row - 1, left : left + length] = colour
        _draw_text(canvas, number, top + 3, left + length + pad)
    canvas[:, pad : height - pad, pad + label_width - 1] = _INK  # the axis
    return _to_uint8(canvas)


def render_sequence_strips(
    maps: Tensor,
    inputs: Tensor | None = None,
    *,
    scale: str | float = "per_image",
    colormap: str = "inferno",
    strip_height: int = 12,
    plot_height: int = 32,
    min_width: int = 256,
) -> Tensor:
    """One heat strip per sequence, each under a line plot of its input when ``inputs`` are given.

    Args:
        maps: attributions per time step (N, T).
        inputs: the sequences (N, T), or (N, T, D) with up to 4 of the D channels drawn in colours.
        scale: ``"per_image"`` (each strip min-max normalised) or a fixed positive scale, see
            :func:`lightning_explain.render.grids.scale_maps`.
        colormap: a name from :data:`lightning_explain.render.grids.COLORMAPS`.
        strip_height: the strip's height in pixels.
        plot_height: the line plot's height in pixels.
        min_width: time steps are widened (an integer factor) until the image is at least this wide.

    Returns:
        An ``uint8`` image (H, W, 3) on the CPU, one block per sample, top to bottom.
    """
    maps = maps.detach().float().cpu()
    if maps.ndim != 2 or maps.shape[0] == 0 or maps.shape[1] == 0:
        raise ValueError(f"maps must be (N, T) with N, T >= 1, got shape {tuple(maps.shape)}.")
    n, steps = maps.shape
    if inputs is not None:
        inputs = inputs.detach().float().cpu()
        if inputs.ndim == 2:
            inputs = inputs[:, :, None]
        if inputs.ndim != 3 or tuple(inputs.shape[:2]) != (n, steps):
            raise ValueError(
                f"inputs must be (N, T) or (N, T, D) with (N, T) = {(n, steps)}, got {tuple(inputs.shape)}."
            )
    factor = max(1, math.ceil(min_width / steps))
    heat = apply_colormap(scale_maps(maps[:, None, :], scale)[:, 0][:, None, :], colormap)  # (N, 3, 1, T)
    strips = heat.repeat_interleave(factor, dim=3).expand(-1, -1, strip_height, -1)
    blocks = [strips]
    if inputs is not None:
        blocks.insert(0, _line_plots(inputs, steps * factor, plot_height))
    gap = torch.ones(n, 3, 4, steps * factor)
    image = torch.cat([*blocks, gap], dim=2)  # (N, 3, h, W)
    image = torch.cat(list(image), dim=1)
    image = F.pad(image, (4, 4, 4, 0), value=1.0)
    return _to_uint8(image)


def _line_plots(inputs: Tensor, width: int, height: int) -> Tensor:
    """Line plots (N, 3, height, width) of up to 4 channels of (N, T, D), each sample min-max normalised."""
    n = inputs.shape[0]
    signals = inputs[:, :, :4].transpose(1, 2)  # (N, D', T)
    low = signals.amin(dim=(1, 2), keepdim=True)
    high = signals.amax(dim=(1, 2), keepdim=True)
    signals = (signals - low) / (high - low).clamp_min(1e-12)
    signals = torch.nan_to_num(signals, nan=0.5)
    columns = F.interpolate(signals, size=width, mode="linear", align_corners=True)  # (N, D', W)
    y = (1 - columns) * (height - 1)
    previous = torch.cat([y[..., :1], y[..., :-1]], dim=-1)
    lo = torch.minimum(y, previous).floor()[:, :, None, :]
    hi = torch.maximum(y, previous).ceil()[:, :, None, :]
    rows = torch.arange(height, dtype=torch.float32)[None, None, :, None]
    ink = (rows >= lo) & (rows <= hi)  # (N, D', H, W)
    canvas = torch.full((n, 3, height, width), 0.97)
    for channel in range(ink.shape[1]):
        colour = torch.tensor(_SIGNAL_COLOURS[channel]).reshape(1, 3, 1, 1)
        mask = ink[:, channel : channel + 1].expand(-1, 3, -1, -1)
        canvas = torch.where(mask, colour.expand_as(canvas), canvas)
    return canvas
