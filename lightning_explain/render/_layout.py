"""Where every pixel of a probe grid comes from, as one index map, so the picture is one gather.

A grid is a header above cells tiled in rows; each cell is a label bar above three panels (input,
heatmap, overlay), each panel a small image enlarged by an integer factor. Rather than enlarging
and copying tensors into place (many strided copies of the full picture), the renderer puts every
source pixel in one flat "atlas" and reads the whole picture with ``atlas[index]``. The index
depends only on the layout, so it is built once per layout and cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """The geometry of a probe grid (all sizes in pixels of the final picture)."""

    n: int  # samples
    h: int  # a panel's source height and width (before enlargement)
    w: int
    factor: int  # enlargement
    ncols: int
    bar_h: int  # label bar height (0: none)
    top_h: int  # header height
    gap: int  # between panels
    pad: int  # around each cell

    @property
    def nrows(self) -> int:
        return math.ceil(self.n / self.ncols)

    @property
    def cell_w(self) -> int:
        return 3 * self.w * self.factor + 2 * self.gap

    @property
    def cell_h(self) -> int:
        return self.bar_h + self.h * self.factor

    @property
    def width(self) -> int:
        return self.ncols * (self.cell_w + 2 * self.pad)

    @property
    def height(self) -> int:
        return self.top_h + self.nrows * (self.cell_h + 2 * self.pad)

    def boxes(self) -> list[list[int]]:
        """Each sample's cell (bar and panels) as ``[x, y, width, height]``, in sample order."""
        pitch_x, pitch_y = self.cell_w + 2 * self.pad, self.cell_h + 2 * self.pad
        return [
            [(i % self.ncols) * pitch_x + self.pad, self.top_h + (i // self.ncols) * pitch_y + self.pad]
            + [self.cell_w, self.cell_h]
            for i in range(self.n)
        ]

    def atlas_size(self) -> tuple[int, int, int]:
        """Where the atlas's parts start: panels at 0, one white pixel, ``n`` bar colours, then the header."""
        panels = 3 * self.n * self.h * self.w
        return panels, panels + 1, panels + 1 + self.n


@lru_cache(maxsize=16)
def _index_cpu(layout: Layout) -> Tensor:
    white, bars, header = layout.atlas_size()
    index = torch.full((layout.height, layout.width), white, dtype=torch.int64)
    index[: layout.top_h] = header + torch.arange(layout.top_h * layout.width).view(layout.top_h, layout.width)
    pitch_y, pitch_x = layout.cell_h + 2 * layout.pad, layout.cell_w + 2 * layout.pad
    grid = index[layout.top_h :].view(layout.nrows, pitch_y, layout.ncols, pitch_x)
    sample = torch.arange(layout.nrows * layout.ncols).view(layout.nrows, 1, layout.ncols, 1)
    filler = sample >= layout.n
    p = layout.pad
    if layout.bar_h:
        region = grid[:, p : p + layout.bar_h, :, p : p + layout.cell_w]
        region.copy_(torch.where(filler, white, bars + sample).expand_as(region))
    rows = (torch.arange(layout.h * layout.factor) // layout.factor).view(1, -1, 1, 1)
    cols = (torch.arange(layout.w * layout.factor) // layout.factor).view(1, 1, 1, -1)
    for k in range(3):  # input, heatmap, overlay
        x = p + k * (layout.w * layout.factor + layout.gap)
        y = p + layout.bar_h
        region = grid[:, y : y + layout.h * layout.factor, :, x : x + layout.w * layout.factor]
        source = ((k * layout.n + sample) * layout.h + rows) * layout.w + cols
        region.copy_(torch.where(filler, white, source))
    return index.flatten()


_on_device: dict[tuple[Layout, torch.device], Tensor] = {}


def layout_index(layout: Layout, device: torch.device) -> Tensor:
    """The flat index (height * width,) into the atlas for ``layout``, cached on ``device``."""
    key = (layout, torch.device(device))
    if key not in _on_device:
        if len(_on_device) >= 16:
            _on_device.pop(next(iter(_on_device)))
        _on_device[key] = _index_cpu(layout).to(device)
    return _on_device[key]
