"""Tests for lightning_explain.render.grids: colour scales, colormaps, overlays and grids."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_explain.render.grids import (
    COLORMAPS,
    apply_colormap,
    colormap_table,
    display_images,
    overlay,
    scale_maps,
    tile_grid,
)

# --- colormap_table ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_colormap_table_shape_endpoints_and_range(name):
    table = colormap_table(name)
    anchors = torch.tensor(COLORMAPS[name], dtype=torch.float32)
    assert table.shape == (256, 3)
    assert table.dtype == torch.float32
    torch.testing.assert_close(table[0], anchors[0])
    torch.testing.assert_close(table[-1], anchors[-1])
    assert table.min() >= 0 and table.max() <= 1


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_colormap_table_passes_through_every_anchor(name):
    # Anchors are evenly spaced over [0, 1]; with a table of (A - 1) * k + 1 entries each anchor is an exact entry.
    anchors = torch.tensor(COLORMAPS[name], dtype=torch.float32)
    k = 4
    table = colormap_table(name, size=(len(anchors) - 1) * k + 1)
    torch.testing.assert_close(table[::k], anchors)
    # Between two anchors the table is their linear interpolation.
    torch.testing.assert_close(table[k // 2], (anchors[0] + anchors[1]) / 2)


def test_colormap_table_gray_is_a_linear_ramp():
    table = colormap_table("gray")
    expected = torch.linspace(0, 1, 256)[:, None].expand(256, 3)
    torch.testing.assert_close(table, expected)


def test_colormap_table_custom_size():
    assert colormap_table("viridis", size=17).shape == (17, 3)


def test_colormap_table_unknown_name_lists_choices():
    with pytest.raises(ValueError) as info:
        colormap_table("jet")
    message = str(info.value)
    assert "jet" in message
    for name in COLORMAPS:
        assert name in message


# --- apply_colormap ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_apply_colormap_endpoints_and_clamping(name):
    anchors = torch.tensor(COLORMAPS[name], dtype=torch.float32)
    values = torch.tensor([[[0.0, 1.0, -5.0], [7.0, -0.1, 1.1]]])  # (1, 2, 3)
    colours = apply_colormap(values, name)
    assert colours.shape == (1, 3, 2, 3)
    first, last = anchors[0], anchors[-1]
    torch.testing.assert_close(colours[0, :, 0, 0], first)
    torch.testing.assert_close(colours[0, :, 0, 1], last)
    torch.testing.assert_close(colours[0, :, 0, 2], first)  # below 0 clamps to 0
    torch.testing.assert_close(colours[0, :, 1, 0], last)  # above 1 clamps to 1
    torch.testing.assert_close(colours[0, :, 1, 1], first)
    torch.testing.assert_close(colours[0, :, 1, 2], last)


def test_apply_colormap_shape_and_values_match_table_lookup():
    torch.manual_seed(0)
    values = torch.rand(2, 4, 5)
    colours = apply_colormap(values, "viridis")
    assert colours.shape == (2, 3, 4, 5)
    table = colormap_table("viridis")
    for n in range(2):
        for i in range(4):
            for j in range(5):
                index = round(float(values[n, i, j]) * 255)
                torch.testing.assert_close(colours[n, :, i, j], table[index])


def test_apply_colormap_gray_is_identity_up_to_quantisation():
    values = torch.linspace(0, 1, 12).reshape(1, 3, 4)
    colours = apply_colormap(values, "gray")
    for c in range(3):
        torch.testing.assert_close(colours[0, c], values[0], atol=0.5 / 255 + 1e-6, rtol=0)


# --- scale_maps -------------------------------------------------------------------------------------------------------


def test_scale_maps_per_image_normalises_each_map_independently():
    maps = torch.stack(
        [
            torch.tensor([[1.0, 2.0], [3.0, 5.0]]),
            torch.tensor([[10.0, 30.0], [20.0, 50.0]]),
        ]
    )
    scaled = scale_maps(maps, "per_image")
    assert scaled.shape == maps.shape
    torch.testing.assert_close(scaled[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(scaled[1], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    for n in range(2):
        assert scaled[n].min() == 0 and scaled[n].max() == 1


def test_scale_maps_per_image_hides_magnitude():
    torch.manual_seed(0)
    base = torch.rand(1, 4, 4)
    scaled = scale_maps(torch.cat([base, 100 * base]), "per_image")
    torch.testing.assert_close(scaled[0], scaled[1])


def test_scale_maps_numeric_scale_is_clamped_division():
    maps = torch.tensor([[[0.0, 0.5], [1.0, 3.0]]])
    scaled = scale_maps(maps, 2.0)
    torch.testing.assert_close(scaled, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    torch.manual_seed(0)
    random_maps = torch.rand(3, 4, 4) * 3 - 1
    torch.testing.assert_close(scale_maps(random_maps, 1.5), (random_maps / 1.5).clamp(0, 1))


def test_scale_maps_numeric_scale_shows_magnitude():
    torch.manual_seed(0)
    base = torch.rand(1, 4, 4) * 0.4
    scaled = scale_maps(torch.cat([base, 2 * base]), 1.0)
    torch.testing.assert_close(scaled[1], 2 * scaled[0])
    assert scaled[1].sum() > scaled[0].sum()


def test_scale_maps_integer_scale_accepted():
    maps = torch.tensor([[[0, 1], [2, 4]]])
    torch.testing.assert_close(scale_maps(maps, 4), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


@pytest.mark.parametrize("scale", ["per_image", 2.0])
def test_scale_maps_nonfinite_become_zero(scale):
    maps = torch.tensor([[[float("nan"), 1.0], [float("inf"), 2.0]], [[-float("inf"), 0.0], [1.0, 2.0]]])
    scaled = scale_maps(maps, scale)
    assert torch.isfinite(scaled).all()
    assert scaled[0, 0, 0] == 0 and scaled[0, 1, 0] == 0 and scaled[1, 0, 0] == 0
    if scale == "per_image":
        # The nonfinite values count as 0 for the min-max normalisation too.
        torch.testing.assert_close(scaled[0], torch.tensor([[0.0, 0.5], [0.0, 1.0]]))
    else:
        torch.testing.assert_close(scaled[0], torch.tensor([[0.0, 0.5], [0.0, 1.0]]))


@pytest.mark.parametrize("value", [0.0, 0.3, 7.0, -2.0])
def test_scale_maps_constant_map_has_no_nan(value):
    maps = torch.full((2, 3, 3), value)
    scaled = scale_maps(maps, "per_image")
    assert torch.isfinite(scaled).all()
    assert (scaled >= 0).all() and (scaled <= 1).all()


def test_scale_maps_does_not_modify_input():
    maps = torch.tensor([[[float("nan"), 1.0], [2.0, 4.0]]])
    before = maps.clone()
    scale_maps(maps, "per_image")
    scale_maps(maps, 2.0)
    torch.testing.assert_close(maps, before, equal_nan=True)


@pytest.mark.parametrize("scale", [0, 0.0, -1.0, float("nan"), "fixed", "per-image", "auto"])
def test_scale_maps_bad_scale_raises(scale):
    with pytest.raises(ValueError, match="scale"):
        scale_maps(torch.rand(1, 2, 2), scale)


# --- display_images ---------------------------------------------------------------------------------------------------


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def test_display_images_one_channel_becomes_grey_rgb():
    torch.manual_seed(0)
    inputs = torch.randn(2, 1, 3, 4) * 5 + 2
    images = display_images(inputs)
    assert images.shape == (2, 3, 3, 4)
    for n in range(2):
        expected = _minmax(inputs[n, 0])
        for c in range(3):
            torch.testing.assert_close(images[n, c], expected)


def test_display_images_three_channels_kept_as_rgb():
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 3, 4)
    images = display_images(inputs)
    assert images.shape == (2, 3, 3, 4)
    for n in range(2):
        torch.testing.assert_close(images[n], _minmax(inputs[n]))  # one min-max over all channels of a sample
    assert not torch.allclose(images[0, 0], images[0, 1])


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_display_images_other_channel_counts_become_grey_mean(channels):
    torch.manual_seed(0)
    inputs = torch.randn(2, channels, 3, 3)
    images = display_images(inputs)
    assert images.shape == (2, 3, 3, 3)
    for n in range(2):
        expected = _minmax(inputs[n].mean(dim=0))
        for c in range(3):
            torch.testing.assert_close(images[n, c], expected)


def test_display_images_each_sample_normalised_to_unit_range():
    inputs = torch.stack([torch.arange(6.0).reshape(1, 2, 3), 1000 + 50 * torch.arange(6.0).reshape(1, 2, 3)])
    images = display_images(inputs)
    for n in range(2):
        assert images[n].min() == 0 and images[n].max() == 1
    torch.testing.assert_close(images[0], images[1])


def test_display_images_constant_sample_and_integer_inputs():
    images = display_images(torch.full((1, 1, 2, 2), 3.0))
    assert torch.isfinite(images).all()
    ints = display_images(torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8))
    assert ints.dtype == torch.float32
    torch.testing.assert_close(ints[0, 0], torch.tensor([[0.0, 1.0], [128 / 255, 64 / 255]]))


def test_display_images_detaches():
    inputs = torch.randn(1, 3, 2, 2, requires_grad=True)
    assert not display_images(inputs).requires_grad


# --- overlay ----------------------------------------------------------------------------------------------------------


def test_overlay_alpha_extremes_and_blend():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 4, 4)
    heat = torch.rand(2, 4, 4)
    colours = apply_colormap(heat, "turbo")
    torch.testing.assert_close(overlay(images, heat, "turbo", alpha=0.0), images)
    torch.testing.assert_close(overlay(images, heat, "turbo", alpha=1.0), colours)
    torch.testing.assert_close(overlay(images, heat, "turbo", alpha=0.25), 0.75 * images + 0.25 * colours)


def test_overlay_default_colormap_is_inferno():
    images = torch.zeros(1, 3, 2, 2)
    heat = torch.ones(1, 2, 2)
    last = torch.tensor(COLORMAPS["inferno"][-1])
    out = overlay(images, heat, alpha=1.0)
    torch.testing.assert_close(out[0, :, 1, 1], last)


# --- tile_grid --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "ncols"), [(1, 1), (4, 2), (5, 2), (3, 4), (7, 3)])
@pytest.mark.parametrize("pad", [0, 2])
def test_tile_grid_size(n, ncols, pad):
    h, w = 3, 5
    grid = tile_grid(torch.zeros(n, 3, h, w), ncols=ncols, pad=pad)
    nrows = math.ceil(n / ncols)
    assert grid.shape == (3, nrows * (h + 2 * pad), ncols * (w + 2 * pad))


def test_tile_grid_places_each_tile_and_fills_the_rest():
    n, h, w, pad, ncols = 5, 2, 3, 1, 3
    tiles = torch.stack([torch.full((3, h, w), float(i)) for i in range(n)])
    tiles += torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) / 100  # distinguish pixels
    tiles[:, 1] += 10  # distinguish channels
    grid = tile_grid(tiles, ncols=ncols, pad=pad, pad_value=-1.0)
    cell_h, cell_w = h + 2 * pad, w + 2 * pad
    for i in range(n):
        row, col = divmod(i, ncols)
        top, left = row * cell_h + pad, col * cell_w + pad
        torch.testing.assert_close(grid[:, top : top + h, left : left + w], tiles[i])
    # Padding around tile 0 and the filler tile (index 5, row 1, col 2) hold pad_value.
    assert (grid[:, 0, :] == -1).all()
    assert (grid[:, :, 0] == -1).all()
    assert (grid[:, cell_h : 2 * cell_h, 2 * cell_w : 3 * cell_w] == -1).all()
    # Every pixel is either a tile pixel or padding: counts add up.
    assert int((grid != -1).sum()) == n * 3 * h * w


def test_tile_grid_default_pad_value_is_white():
    grid = tile_grid(torch.zeros(1, 3, 2, 2), ncols=2)
    assert grid.shape == (3, 6, 12)
    assert grid[:, :, 6:].eq(1).all()  # the filler tile
    assert grid[:, 2:4, 2:4].eq(0).all()
