"""Turn attribution maps into images: colour scales, colormaps, overlays and grids.

Everything runs on the maps' device with tensor ops (no loops over pixels or samples);
only the finished ``uint8`` grid, one small image per event, needs to reach the host.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

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


def render_explanation_grid(
    inputs: Tensor,
    maps: Tensor,
    *,
    scale: str | float = "per_image",
    colormap: str = "inferno",
    alpha: float = 0.5,
    correct: Tensor | None = None,
    min_cell: int = 64,
    return_cells: bool = False,
) -> Tensor | tuple[Tensor, list[list[int]]]:
    """One picture of a probe batch and its maps: each sample's input beside its overlay.

    Samples are laid out in a near-square grid; small inputs are enlarged (nearest
    neighbour, an integer factor) so each cell is at least ``min_cell`` pixels. With
    ``correct``, a strip above each sample is green where the model's prediction is right
    and red where it is wrong.

    Args:
        inputs: the probe inputs (N, C, H, W).
        maps: one map per input (N, H, W).
        scale: see :func:`scale_maps`.
        colormap: a name from :data:`COLORMAPS`.
        alpha: the heat's weight in the overlay.
        correct: optional bool (N,): whether each sample is predicted right.
        min_cell: the smallest cell side in pixels.
        return_cells: also return each sample's cell, as :func:`grid_boxes` gives it.

    Returns:
        An ``uint8`` image (H', W', 3) on the maps' device; with ``return_cells``, the image and
        one ``[x, y, width, height]`` box per sample (its strip, input and overlay).
    """
    images = display_images(inputs)
    heat = scale_maps(maps, scale)
    blended = overlay(images, heat, colormap, alpha)
    factor = max(1, math.ceil(min_cell / min(images.shape[2:])))
    # Quantise at the inputs' resolution, then enlarge, label and tile bytes: the same picture as
    # doing it all in float (enlarging replicates pixels), with a quarter of the memory traffic.
    pairs = _to_uint8(torch.cat([images, blended], dim=3))  # (N, 3, H, 2W): input | overlay
    if factor > 1:
        n, channels, height, width = pairs.shape
        pairs = pairs[:, :, :, None, :, None].expand(n, channels, height, factor, width, factor)
        pairs = pairs.reshape(n, channels, height * factor, width * factor)  # nearest-neighbour enlargement
    if correct is not None:
        palette = _to_uint8(blended.new_tensor([[0.85, 0.15, 0.15], [0.15, 0.75, 0.25]]))  # red: wrong, green: right
        strip = palette[correct.long()][:, :, None, None].expand(-1, -1, max(3, pairs.shape[2] // 24), pairs.shape[3])
        pairs = torch.cat([strip, pairs], dim=2)
    ncols = math.ceil(math.sqrt(inputs.shape[0]))
    grid = tile_grid(pairs, ncols=ncols, pad_value=255).permute(1, 2, 0).contiguous()  # rows ready for PNG
    if return_cells:
        return grid, grid_boxes(pairs.shape[0], pairs.shape[2], pairs.shape[3], ncols)
    return grid


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
