"""Tests for lightning_explain.rendering: colour scales, colormaps, overlays and grids."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_explain.rendering import (
    COLORMAPS,
    apply_colormap,
    colormap_table,
    display_images,
    overlay,
    render_explanation_grid,
    scale_maps,
    tile_grid,
)

GREEN = (38, 191, 64)  # round(255 * (0.15, 0.75, 0.25))
RED = (217, 38, 38)  # round(255 * (0.85, 0.15, 0.15))


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


# --- render_explanation_grid ------------------------------------------------------------------------------------------


def _inputs_and_maps(n=4, c=1, h=8, w=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=generator), torch.rand(n, h, w, generator=generator)


def test_render_grid_dtype_shape_and_enlargement():
    inputs, maps = _inputs_and_maps(n=4, h=8, w=8)
    grid = render_explanation_grid(inputs, maps, min_cell=32)
    assert grid.dtype == torch.uint8
    assert grid.device == maps.device
    # factor ceil(32 / 8) = 4; pairs of 32 x 64; 2 x 2 grid with 2 px padding per side.
    assert grid.shape == (2 * (32 + 4), 2 * (64 + 4), 3)


@pytest.mark.parametrize(("h", "w", "min_cell"), [(5, 7, 16), (8, 8, 8), (3, 4, 96), (20, 20, 10)])
def test_render_grid_cells_are_at_least_min_cell(h, w, min_cell):
    inputs, maps = _inputs_and_maps(n=1, h=h, w=w)
    grid = render_explanation_grid(inputs, maps, min_cell=min_cell)
    factor = max(1, math.ceil(min_cell / min(h, w)))
    assert grid.shape == (h * factor + 4, 2 * w * factor + 4, 3)
    cell_h, cell_w = grid.shape[0] - 4, (grid.shape[1] - 4) // 2
    assert min(cell_h, cell_w) >= min_cell
    # The smallest integer factor: one step less would be too small (unless no enlargement was needed).
    assert factor == 1 or min(h, w) * (factor - 1) < min_cell


def test_render_grid_content_matches_pipeline_with_factor_one():
    inputs, maps = _inputs_and_maps(n=2, c=3, h=4, w=4)
    grid = render_explanation_grid(inputs, maps, min_cell=1, alpha=0.5, colormap="viridis", scale=2.0)
    images = display_images(inputs)
    blended = overlay(images, scale_maps(maps, 2.0), "viridis", 0.5)
    # Cells are 4 x 8 plus 2 px padding per side: 8 x 12; ncols = ceil(sqrt(2)) = 2, one row.
    assert grid.shape == (8, 24, 3)
    # Sample 1 sits in column 1: its input at x 14..18, its overlay at x 18..22.
    expected_input = (images[1] * 255).round().to(torch.uint8).permute(1, 2, 0)
    expected_overlay = (blended[1].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    torch.testing.assert_close(grid[2:6, 14:18], expected_input)
    torch.testing.assert_close(grid[2:6, 18:22], expected_overlay)


def test_render_grid_correct_strip_colours():
    inputs, maps = _inputs_and_maps(n=4, h=8, w=8)
    plain = render_explanation_grid(inputs, maps, min_cell=32)
    correct = torch.tensor([True, False, False, True])
    grid = render_explanation_grid(inputs, maps, min_cell=32, correct=correct)
    strip = max(3, 32 // 24)
    assert grid.shape == (plain.shape[0] + 2 * strip, plain.shape[1], 3)
    cell_h, plain_cell_h, cell_w = 32 + strip + 4, 32 + 4, 64 + 4
    for i, right in enumerate(correct.tolist()):
        row, col = divmod(i, 2)
        top, plain_top, left = row * cell_h + 2, row * plain_cell_h + 2, col * cell_w + 2
        region = grid[top : top + strip, left : left + 64]
        expected = torch.tensor(GREEN if right else RED, dtype=torch.uint8)
        assert (region == expected).all(), (i, region[0, 0])
        # Below the strip the picture is the same as without it.
        below = grid[top + strip : top + strip + 32, left : left + 64]
        torch.testing.assert_close(below, plain[plain_top : plain_top + 32, left : left + 64])


def test_render_grid_strip_height_scales_with_cell():
    inputs, maps = _inputs_and_maps(n=1, h=8, w=8)
    plain = render_explanation_grid(inputs, maps, min_cell=96)
    grid = render_explanation_grid(inputs, maps, min_cell=96, correct=torch.tensor([False]))
    assert grid.shape[0] - plain.shape[0] == 96 // 24
    assert (grid[2 : 2 + 4, 2 : 2 + 192] == torch.tensor(RED, dtype=torch.uint8)).all()


def test_render_grid_per_image_vs_fixed_scale():
    inputs = torch.zeros(2, 1, 4, 4)
    base = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5
    maps = torch.cat([base, 2 * base])
    per_image = render_explanation_grid(inputs, maps, min_cell=1, alpha=1.0, colormap="gray")
    fixed = render_explanation_grid(inputs, maps, min_cell=1, alpha=1.0, colormap="gray", scale=1.0)
    # ncols = 2: sample 0 overlay at x 2+4 .. 2+8, sample 1 overlay at x 14+4 ...
    overlay0 = (slice(2, 6), slice(6, 10))
    overlay1 = (slice(2, 6), slice(18, 22))
    torch.testing.assert_close(per_image[overlay0], per_image[overlay1])
    assert fixed[overlay1].float().sum() > fixed[overlay0].float().sum() * 1.5


def test_render_grid_pixels_cover_full_uint8_range_for_gray():
    inputs = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    maps = torch.zeros(1, 4, 4)
    grid = render_explanation_grid(inputs, maps, min_cell=1)
    image = grid[2:6, 2:6]
    assert image.min() == 0 and image.max() == 255
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
