"""Turn attribution maps into images: colour scales, colormaps, overlays and grids.

Everything runs on the maps' device with tensor ops (no loops over pixels or samples);
only the finished ``uint8`` grid, one small image per event, needs to reach the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_explain.render._annotate import bar_colours, bar_height, fit_scale, header, stamp_labels
from lightning_explain.render._layout import Layout, layout_index

# Anchor colours, evenly spaced from 0 to 1, sampled from the published colormaps.
COLORMAPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "inferno": (
        (0.001, 0.000, 0.014), (0.129, 0.047, 0.291), (0.342, 0.062, 0.429),
        (0.541, 0.135, 0.415), (0.736, 0.216, 0.330), (0.894, 0.353, 0.194),
        (0.978, 0.558, 0.035), (0.975, 0.798, 0.206), (0.988, 0.998, 0.645),
    ),
    "viridis": (
        (0.267, 0.005, 0.329), (0.279, 0.175, 0.483), (0.230, 0.322, 0.546),
        (0.173, 0.449, 0.558), (0.128, 0.567, 0.551), (0.158, 0.684, 0.502),
        (0.369, 0.789, 0.383), (0.678, 0.864, 0.190), (0.993, 0.906, 0.144),
    ),
    "turbo": (
        (0.190, 0.072, 0.232), (0.276, 0.421, 0.891), (0.158, 0.736, 0.923),
        (0.197, 0.949, 0.595), (0.644, 0.990, 0.234), (0.933, 0.812, 0.227),
        (0.984, 0.493, 0.128), (0.816, 0.185, 0.018), (0.480, 0.016, 0.011),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}  # fmt: skip

COLOR_SCALES = ("per_image", "fixed")
"""``per_image``: each map min-max normalised on its own. ``fixed``: one scale per method for the run."""


def colormap_table(name: str, device: torch.device | str = "cpu", size: int = 256) -> Tensor:
    """A (size, 3) float lookup table interpolated linearly between the colormap's anchors."""
    if name not in COLORMAPS:
        raise ValueError(f"Unknown colormap {name!r}; valid choices: {sorted(COLORMAPS)}.")
    anchors = torch.tensor(COLORMAPS[name], dtype=torch.float32, device=device)  # (A, 3)
    table = F.interpolate(anchors.T[None], size=size, mode="linear", align_corners=True)[0].T
    return table.contiguous()


def apply_colormap(values: Tensor, name: str = "inferno") -> Tensor:
    """Colour values in [0, 1], shape (N, H, W), into RGB images (N, 3, H, W) in [0, 1]."""
    table = colormap_table(name, values.device)
    index = (values.clamp(0, 1) * (table.shape[0] - 1)).round().long()
    return table[index].permute(0, 3, 1, 2)


def scale_maps(maps: Tensor, scale: str | float) -> Tensor:
    """Map attribution values (N, H, W) into [0, 1] for display.

    Args:
        maps: non-negative attribution maps.
        scale: ``"per_image"`` to min-max normalise each map on its own (shape is visible,
            magnitude is not), or a positive number ``s`` to show ``clamp(map / s, 0, 1)``
            (the same scale across events, so growth and decay are visible).
    """
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if scale == "per_image":
        flat = maps.flatten(1)
        low = flat.amin(dim=1)[:, None, None]
        high = flat.amax(dim=1)[:, None, None]
        return (maps - low) / (high - low).clamp_min(torch.finfo(maps.dtype).tiny)
    if isinstance(scale, str) or not scale > 0:
        raise ValueError(f"scale must be 'per_image' or a positive number, got {scale!r}.")
    return (maps / scale).clamp(0, 1)


def display_images(inputs: Tensor) -> Tensor:
    """Inputs (N, C, H, W) as RGB (N, 3, H, W) in [0, 1], each sample min-max normalised.

    One channel is shown as grey, three as RGB; any other count as the channel mean in grey.
    """
    images = inputs.detach().float()
    if images.shape[1] not in (1, 3):
        images = images.mean(dim=1, keepdim=True)
    flat = images.flatten(1)
    low = flat.amin(dim=1)[:, None, None, None]
    high = flat.amax(dim=1)[:, None, None, None]
    images = (images - low) / (high - low).clamp_min(1e-12)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def overlay(images: Tensor, heat: Tensor, colormap: str = "inferno", alpha: float = 0.5) -> Tensor:
    """Blend coloured heat (N, H, W) in [0, 1] over RGB images (N, 3, H, W): ``(1-a)*image + a*colour``."""
    return (1 - alpha) * images + alpha * apply_colormap(heat, colormap)


def tile_grid(tiles: Tensor, ncols: int, pad: int = 2, pad_value: float = 1.0) -> Tensor:
    """Arrange tiles (N, 3, H, W) into one image (3, H', W') with ``ncols`` tiles a row."""
    n, channels, height, width = tiles.shape
    nrows = math.ceil(n / ncols)
    filler = tiles.new_full((nrows * ncols - n, channels, height, width), pad_value)
    tiles = F.pad(torch.cat([tiles, filler]), (pad, pad, pad, pad), value=pad_value)
    height, width = height + 2 * pad, width + 2 * pad
    grid = tiles.reshape(nrows, ncols, channels, height, width).permute(2, 0, 3, 1, 4)
    return grid.reshape(channels, nrows * height, ncols * width)


def grid_boxes(n: int, tile_height: int, tile_width: int, ncols: int, pad: int = 2) -> list[list[int]]:
    """Where :func:`tile_grid` puts each of ``n`` tiles: ``[x, y, width, height]`` in pixels, in tile order."""
    step_x, step_y = tile_width + 2 * pad, tile_height + 2 * pad
    return [[(i % ncols) * step_x + pad, (i // ncols) * step_y + pad, tile_width, tile_height] for i in range(n)]


PANEL_GAP = 4
"""White pixels between the three panels of a cell (input, heatmap, overlay)."""
CELL_PAD = 3
"""White pixels around each cell (so 2 * CELL_PAD between neighbouring cells)."""


def heat_overlay(
    images: Tensor, heat: Tensor, colormap: str = "inferno", alpha: float = 0.8, *, colours: Tensor | None = None
) -> Tensor:
    """Heat over dimmed images, weighted by the heat itself: ``(1-w)*0.6*image + w*colour``, ``w = alpha*heat``.

    Where the map is low the input shows (dimmed, so it does not compete with the heat); where it is
    high, the heat's colour covers it. ``alpha`` is the heat's weight at the map's maximum.
    ``colours``: ``apply_colormap(heat, colormap)`` when the caller has it already.
    """
    weight = alpha * heat.clamp(0, 1)[:, None]
    colours = apply_colormap(heat, colormap) if colours is None else colours
    return (1 - weight) * (0.6 * images) + weight * colours


OUTLINE_COLOUR = (0.0, 1.0, 1.0)
"""The colour of mask outlines (cyan: apart from every colormap's hues and from the bars' green and red)."""


def mask_outline(masks: Tensor) -> Tensor:
    """The boundary pixels of bool masks (N, H, W): in the mask, with a 4- or 8-neighbour outside it."""
    inside = masks.float()[:, None]
    eroded = -F.max_pool2d(-inside, 3, stride=1, padding=1)
    return (inside - eroded)[:, 0] > 0


def render_explanation_grid(
    inputs: Tensor,
    maps: Tensor,
    *,
    scale: str | float = "per_image",
    colormap: str = "inferno",
    alpha: float = 0.8,
    correct: Tensor | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    ncols: int | None = None,
    min_cell: int = 96,
    return_cells: bool = False,
    outlines: Tensor | None = None,
) -> Tensor | tuple[Tensor, list[list[int]]]:
    """One picture of a probe batch and its maps, readable at a glance.

    Each sample's cell holds three panels side by side: the input (grey or RGB, normalised to its
    own range), the heatmap alone in the colormap, and the heat over the dimmed input
    (:func:`heat_overlay`). Above them, a bar with the sample's ``labels`` text (e.g. its true and
    predicted class), green where ``correct`` is True, red where False, grey without ``correct``.
    Above the cells, a header with ``title`` (e.g. the method and the step) and a colour bar that
    says what the colours mean: each map from its own minimum to its maximum (``scale="per_image"``),
    or from 0 to the fixed value (brighter values are clipped). Small inputs are enlarged (nearest
    neighbour, an integer factor) so each panel is at least ``min_cell`` pixels; the cells are tiled
    ``ncols`` a row (default: one column up to 16 samples, so the picture stays about 300 pixels wide,
    the width of a TensorBoard image card, where it is shown without shrinking; more columns beyond).

    Args:
        inputs: the probe inputs (N, C, H, W).
        maps: one map per input (N, H, W).
        scale: see :func:`scale_maps`.
        colormap: a name from :data:`COLORMAPS`.
        alpha: the heat's weight in the overlay where the map is at its maximum.
        correct: optional bool (N,): whether each sample is predicted right (the bar's colour).
        labels: optional text per sample for its bar (digits, letters, ``. : % - + / = ( )``).
        title: optional text for the header.
        ncols: cells per row.
        min_cell: the smallest panel side in pixels.
        return_cells: also return each sample's cell (bar and panels) as ``[x, y, width, height]``.
        outlines: optional bool masks (N, H, W), e.g. a segmentation's predicted region: their boundary is drawn in
            :data:`OUTLINE_COLOUR` over the input and the overlay panels.

    Returns:
        An ``uint8`` image (H', W', 3) on the maps' device; with ``return_cells``, the image and
        one ``[x, y, width, height]`` box per sample, in sample order.
    """
    n = inputs.shape[0]
    images = display_images(inputs)
    heat = scale_maps(maps, scale)
    colours = apply_colormap(heat, colormap)
    overlaid = heat_overlay(images, heat, alpha=alpha, colours=colours)
    if outlines is not None:
        edge = mask_outline(outlines.to(maps.device))[:, None]
        colour = torch.tensor(OUTLINE_COLOUR, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        images, overlaid = torch.where(edge, colour, images), torch.where(edge, colour, overlaid)
    # Quantise at the inputs' resolution, channels last; the picture is then one gather from these
    # pixels (see lightning_explain.render._layout): nearest-neighbour enlargement, tiling and padding in one pass.
    panels = _to_uint8(torch.stack([images, colours, overlaid]).permute(0, 1, 3, 4, 2))  # (3, N, h, w, 3)
    _, _, h, w, _ = panels.shape
    factor = max(1, math.ceil(min_cell / min(h, w)))
    ncols = max(1, min(n, ncols or (1 if n <= 16 else math.ceil(math.sqrt(n / 4)))))
    cell_w = 3 * w * factor + 2 * PANEL_GAP
    lines = [str(line) for line in labels] if labels is not None else None
    text_scale = fit_scale(cell_w, max(map(len, lines or [""])))
    bar_h = bar_height(text_scale) if correct is not None or labels is not None else 0
    top = header(ncols * (cell_w + 2 * CELL_PAD), title, scale, apply_colormap, colormap, maps.device)
    layout = Layout(n, h, w, factor, ncols, bar_h, top.shape[0], PANEL_GAP, CELL_PAD)
    white = panels.new_full((1, 3), 255)
    atlas = torch.cat([panels.reshape(-1, 3), white, bar_colours(n, correct, maps.device), top.reshape(-1, 3)])
    image = atlas.index_select(0, layout_index(layout, maps.device)).view(layout.height, layout.width, 3)
    if lines and any(lines):
        stamp_labels(image, layout, lines, text_scale)
    return (image, layout.boxes()) if return_cells else image


def grid_metadata(
    method: str, step: int, shape: tuple[int, ...], cells: list[list[int]], samples: dict[str, list | None]
) -> dict[str, object]:
    """The layout a probe grid carries in its PNG (``lightning-explain/grid``, version 1): cells and outcomes.

    Readers (the Explain dashboard) use it to cut one sample out of a grid; keys they do not know are ignored.
    """
    return {
        "format": "lightning-explain/grid",
        "version": 1,
        "method": method,
        "step": int(step),
        "samples": len(cells),
        "height": int(shape[0]),
        "width": int(shape[1]),
        "cells": [{"sample": index, "box": box} for index, box in enumerate(cells)],
        **samples,
    }


def render_feature_maps(
    activation: Tensor,
    *,
    max_channels: int = 16,
    colormap: str = "viridis",
    min_cell: int = 32,
) -> Tensor:
    """One picture of a layer's feature maps: a row per sample, a tile per channel.

    The first ``max_channels`` channels are shown, in order, so a channel keeps its column
    from one event to the next. Each channel is min-max normalised over the whole batch, so
    the samples in a column share one scale (an all-zero "dead" channel stays dark). Small
    maps are enlarged (nearest neighbour, an integer factor) to at least ``min_cell`` pixels.

    Args:
        activation: a layer's output (N, C, h, w).
        max_channels: the most channels shown.
        colormap: a name from :data:`COLORMAPS`.
        min_cell: the smallest tile side in pixels.

    Returns:
        An ``uint8`` image (H', W', 3) on the activation's device.
    """
    if activation.ndim != 4:
        raise ValueError(
            f"Feature maps are drawn from a layer output of shape (N, C, h, w), got {tuple(activation.shape)}. "
            "Choose a convolutional layer with layer=..."
        )
    if max_channels < 1:
        raise ValueError(f"max_channels must be >= 1, got {max_channels}.")
    maps = torch.nan_to_num(activation.detach().float()[:, :max_channels], nan=0.0, posinf=0.0, neginf=0.0)
    n, channels, height, width = maps.shape
    low = maps.amin(dim=(0, 2, 3), keepdim=True)
    high = maps.amax(dim=(0, 2, 3), keepdim=True)
    scaled = (maps - low) / (high - low).clamp_min(torch.finfo(maps.dtype).tiny)
    tiles = apply_colormap(scaled.reshape(n * channels, height, width), colormap)  # (N*C, 3, h, w)
    factor = max(1, math.ceil(min_cell / min(height, width)))
    if factor > 1:
        tiles = F.interpolate(tiles, scale_factor=factor, mode="nearest")
    grid = tile_grid(tiles, ncols=channels, pad=1)
    return _to_uint8(grid).permute(1, 2, 0).contiguous()


def _to_uint8(values: Tensor) -> Tensor:
    """Values in [0, 1] (clamped) as bytes 0 to 255, rounded to nearest."""
    return (values.clamp(0, 1) * 255).round().to(torch.uint8)
