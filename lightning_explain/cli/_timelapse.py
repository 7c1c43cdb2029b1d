"""Frames of an image series, stamped with their step, as an animated GIF and a contact sheet (Pillow)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from lightning_explain.cli._runs import CLIError

BANNER_HEIGHT = 18
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)


def _pil():
    """Pillow's Image, ImageDraw and ImageFont modules, or a ``CLIError`` that says how to install it."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as err:  # recent tensorboard releases require Pillow, older ones (e.g. 2.11) do not
        raise CLIError("timelapse needs Pillow to write GIF and PNG files; run: pip install pillow") from err
    return Image, ImageDraw, ImageFont


def _font(size: int = 12):
    """Pillow's bundled default font at ``size`` pixels (the bitmap font on Pillow < 10.1)."""
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def decode(encoded: bytes):
    """An encoded image (PNG, as TensorBoard stores it) as an RGB Pillow image."""
    Image, _, _ = _pil()
    with Image.open(io.BytesIO(encoded)) as image:
        return image.convert("RGB")


def stamp(image, label: str):
    """``image`` below a white banner of ``BANNER_HEIGHT`` pixels that reads ``label``."""
    Image, ImageDraw, _ = _pil()
    out = Image.new("RGB", (image.width, image.height + BANNER_HEIGHT), _BACKGROUND)
    out.paste(image, (0, BANNER_HEIGHT))
    ImageDraw.Draw(out).text((4, 2), label, fill=_TEXT, font=_font(12))
    return out


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, always with the first and the last; all when ``k`` is None."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _common_size(frames: list) -> list:
    """Frames padded with white to the largest width and height among them (a GIF needs one size)."""
    Image, _, _ = _pil()
    width, height = max(f.width for f in frames), max(f.height for f in frames)
    padded = []
    for frame in frames:
        if frame.size == (width, height):
            padded.append(frame)
        else:
            canvas = Image.new("RGB", (width, height), _BACKGROUND)
            canvas.paste(frame, (0, 0))
            padded.append(canvas)
    return padded


def write_gif(frames: list, path: Path, *, fps: float) -> None:
    """Save the frames as a looping GIF at ``fps`` frames per second."""
    frames = _common_size(frames)
    # Pillow merges identical consecutive frames; stamped frames differ by their step, so each one stays.
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0, optimize=False)


def contact_sheet(frames: list, *, columns: int | None = None, gap: int = 4):
    """The frames tiled row by row in a grid (``columns`` per row, about square by default) on white."""
    Image, _, _ = _pil()
    frames = _common_size(frames)
    columns = columns or math.ceil(math.sqrt(len(frames)))
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    width, height = frames[0].size
    sheet = Image.new("RGB", (columns * width + (columns + 1) * gap, rows * height + (rows + 1) * gap), _BACKGROUND)
    for i, frame in enumerate(frames):
        row, col = divmod(i, columns)
        sheet.paste(frame, (gap + col * (width + gap), gap + row * (height + gap)))
    return sheet


def output_paths(out: Path, tag: str, tags: list[str]) -> tuple[Path, Path]:
    """Where a tag's GIF and contact sheet go.

    One tag: ``out`` itself and ``<stem>_sheet.png`` beside it. Several tags: ``<stem>_<name>.gif`` and
    ``<stem>_<name>_sheet.png``, where ``<name>`` is the tag without the leading ``/``-separated parts all
    the tags share (``explain/grad_cam`` and ``explain/saliency`` give ``grad_cam`` and ``saliency``), with
    every character other than letters, digits, ``-`` and ``.`` replaced by ``_``.
    """
    stem = out.with_suffix("")
    if len(tags) > 1:
        parts = [t.split("/") for t in tags]
        shared = 0
        while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
            shared += 1
        name = "/".join(tag.split("/")[shared:])
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
        stem = stem.with_name(f"{stem.name}_{safe}")
    return stem.with_suffix(".gif"), stem.with_name(f"{stem.name}_sheet.png")
