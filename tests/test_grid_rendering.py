"""The probe grid: three panels per sample, a bar with its classes, a header with the step and the colour scale."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_explain.render import _annotate, _font
from lightning_explain.render.grids import (
    CELL_PAD,
    PANEL_GAP,
    apply_colormap,
    display_images,
    heat_overlay,
    render_explanation_grid,
    scale_maps,
)

GREEN = tuple(round(255 * v) for v in _annotate.RIGHT)
RED = tuple(round(255 * v) for v in _annotate.WRONG)
GREY = tuple(round(255 * v) for v in _annotate.UNKNOWN)


def _inputs_and_maps(n=4, c=1, h=8, w=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=generator), torch.rand(n, h, w, generator=generator)


def _bytes(values):
    return (values.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def test_font_glyphs_case_unknown_characters_and_width():
    zero = _font.text_masks(["0"])[0]
    assert zero.shape == (7, 5)
    assert zero.int().tolist()[0] == [0, 1, 1, 1, 0] and zero.int().tolist()[3] == [1, 0, 1, 0, 1]
    assert torch.equal(_font.text_masks(["abc"]), _font.text_masks(["ABC"]))
    assert torch.equal(_font.text_masks(["\u00e9"]), _font.text_masks(["?"]))
    two = _font.text_masks(["7", "77"], scale=3)
    assert two.shape == (2, 21, _font.text_width(2, 3)) and _font.text_width(2, 3) == 33
    assert not two[0, :, 15:].any() and two[1, :, 18:].any()  # the short line is padded with blank
    assert not _font.text_masks(["7 "])[0, :, 5].any()  # one blank column between characters


def test_cells_hold_input_heatmap_and_overlay_panels():
    inputs, maps = _inputs_and_maps(n=2, c=3, h=4, w=4)
    image, cells = render_explanation_grid(
        inputs, maps, min_cell=1, alpha=0.5, colormap="viridis", scale=2.0, return_cells=True
    )
    images = display_images(inputs)
    heat = scale_maps(maps, 2.0)
    panels = [images, apply_colormap(heat, "viridis"), heat_overlay(images, heat, "viridis", 0.5)]
    for i, (x, y, w, h) in enumerate(cells):
        assert (w, h) == (3 * 4 + 2 * PANEL_GAP, 4)  # no bar without labels or correct
        for k, panel in enumerate(panels):
            left = x + k * (4 + PANEL_GAP)
            torch.testing.assert_close(image[y : y + 4, left : left + 4], _bytes(panel[i]))
        assert (image[y : y + 4, x + 4 : x + 4 + PANEL_GAP] == 255).all()  # white between panels


def test_small_inputs_are_enlarged_to_min_cell_by_the_smallest_integer_factor():
    for h, w, min_cell in [(5, 7, 16), (8, 8, 8), (3, 4, 96), (20, 20, 10)]:
        inputs, maps = _inputs_and_maps(n=1, h=h, w=w)
        _, ((_, _, cell_w, cell_h),) = render_explanation_grid(inputs, maps, min_cell=min_cell, return_cells=True)
        factor = max(1, math.ceil(min_cell / min(h, w)))
        assert (cell_h, cell_w) == (h * factor, 3 * w * factor + 2 * PANEL_GAP)
        assert min(h, w) * factor >= min_cell and (factor == 1 or min(h, w) * (factor - 1) < min_cell)


def test_one_column_for_small_probes_more_for_large_ones():
    inputs, maps = _inputs_and_maps(n=8)
    image, cells = render_explanation_grid(inputs, maps, min_cell=32, return_cells=True)
    assert {x for x, _, _, _ in cells} == {CELL_PAD}
    assert [y for _, y, _, _ in cells] == sorted(y for _, y, _, _ in cells)
    assert image.shape[1] == cells[0][2] + 2 * CELL_PAD  # about 300 px wide at the default min_cell
    inputs, maps = _inputs_and_maps(n=64)
    _, cells = render_explanation_grid(inputs, maps, min_cell=8, return_cells=True)
    assert len({x for x, _, _, _ in cells}) == 4
    _, cells = render_explanation_grid(inputs[:6], maps[:6], min_cell=8, ncols=3, return_cells=True)
    assert len({x for x, _, _, _ in cells}) == 3


def test_the_bar_is_green_red_or_grey_and_carries_the_label_in_white():
    inputs, maps = _inputs_and_maps(n=3, h=32, w=32)
    labels = ["LABEL 3 PRED 3 97%", "LABEL 1 PRED 7 55%", ""]
    correct = torch.tensor([True, False, True])
    image, cells = render_explanation_grid(inputs, maps, correct=correct, labels=labels, return_cells=True)
    plain, plain_cells = render_explanation_grid(inputs, maps, return_cells=True)
    scale = _annotate.fit_scale(cells[0][2], len(labels[0]))
    bar = 7 * scale + 2 * _annotate.MARGIN
    assert scale == 2  # 14-pixel letters in a 296-pixel cell
    rows = zip(cells, plain_cells, labels, (GREEN, RED, GREEN), strict=True)
    for (x, y, w, h), (px, py, pw, ph), label, colour in rows:
        assert h == ph + bar and w == pw
        assert image[y, x + w // 2].tolist() == list(colour)  # the top row is the bar's colour
        region = image[y : y + bar, x : x + w]
        white = (region == 255).all(dim=-1)
        expected = torch.zeros_like(white)
        if label:
            mask = _font.text_masks([label], scale)[0]
            expected[_annotate.MARGIN : _annotate.MARGIN + mask.shape[0], 4 : 4 + mask.shape[1]] = mask
        assert torch.equal(white, expected)
        assert torch.equal(image[y + bar : y + h, x : x + w], plain[py : py + ph, px : px + pw])
    grey, cells = render_explanation_grid(inputs[:1], maps[:1], labels=["PRED 3 97%"], return_cells=True)
    assert grey[cells[0][1], cells[0][0] + 1].tolist() == list(GREY)  # no labels to tell right from wrong


def _line(header, y, text, scale):
    """Whether ``text`` is written in black at (MARGIN, y) of the header (3, h, w)."""
    mask = _font.text_masks([text], scale)[0]
    region = header[:, y : y + mask.shape[0], _annotate.MARGIN : _annotate.MARGIN + mask.shape[1]]
    return torch.equal((region == 0).all(dim=0), mask)


def test_the_header_gives_the_title_and_what_the_colours_mean():
    inputs, maps = _inputs_and_maps(n=2, h=32, w=32)
    image, cells = render_explanation_grid(inputs, maps, title="grad_cam  step 230", return_cells=True)
    header = image[: cells[0][1] - CELL_PAD].permute(2, 0, 1)
    title_scale = _annotate.fit_scale(image.shape[1], len("grad_cam  step 230"))
    assert title_scale == 2 and _line(header, _annotate.MARGIN, "GRAD_CAM  STEP 230", 2)
    bar_y = _annotate.MARGIN + 14 + _annotate.MARGIN
    bar_scale = _annotate.fit_scale(image.shape[1], len("EACH MAP: MIN") + len("MAX") + 2, room=64)
    assert _line(header, bar_y, "EACH MAP: MIN", bar_scale)
    ramp = header[:, bar_y + 2].T.tolist()  # a row through the colour bar holds the colormap's both ends
    table = (apply_colormap(torch.tensor([[[0.0, 1.0]]]), "inferno")[0, :, 0].T * 255).round().int().tolist()
    assert table[0] in ramp and table[1] in ramp
    fixed = render_explanation_grid(inputs, maps, scale=0.00123, title="saliency  step 0")
    assert _line(fixed.permute(2, 0, 1), bar_y, "FIXED: 0", bar_scale)
    text = _annotate.header(400, None, 0.00123, apply_colormap, "inferno").permute(2, 0, 1)
    high = _font.text_masks(["0.00123+"], 2)[0]
    assert any(  # the fixed value is written at the bar's right end
        torch.equal((text[:, _annotate.MARGIN : _annotate.MARGIN + 14, x : x + high.shape[1]] == 0).all(0), high)
        for x in range(200, 400 - high.shape[1])
    )


def test_labels_grow_with_wide_cells():
    inputs, maps = _inputs_and_maps(n=1, c=3, h=224, w=224)
    _, ((_, _, w, _),) = render_explanation_grid(inputs, maps, return_cells=True)
    assert _annotate.fit_scale(w, len("LABEL 3 PRED 3 97%")) == w // 150 == 4


def test_per_image_scale_shows_shape_fixed_scale_shows_magnitude():
    inputs = torch.zeros(2, 1, 4, 4)
    base = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5
    maps = torch.cat([base, 2 * base])
    per_image, cells = render_explanation_grid(inputs, maps, min_cell=1, colormap="gray", return_cells=True)
    fixed = render_explanation_grid(inputs, maps, min_cell=1, colormap="gray", scale=1.0)
    heat = [(slice(y, y + 4), slice(x + 4 + PANEL_GAP, x + 8 + PANEL_GAP)) for x, y, _, _ in cells]
    torch.testing.assert_close(per_image[heat[0]], per_image[heat[1]])
    assert fixed[heat[1]].float().sum() > fixed[heat[0]].float().sum() * 1.5


def test_the_overlay_lets_the_heat_dominate_where_it_is_high():
    images = torch.ones(1, 3, 1, 2)  # a bright input
    heat = torch.tensor([[[0.0, 1.0]]])
    out = heat_overlay(images, heat, "inferno", alpha=0.8)
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((3,), 0.6))  # no heat: the input, dimmed
    top = apply_colormap(heat, "inferno")[0, :, 0, 1]
    torch.testing.assert_close(out[0, :, 0, 1], 0.2 * 0.6 + 0.8 * top)


@pytest.mark.parametrize("colormap", ["gray", "inferno"])
def test_input_panel_covers_the_full_byte_range(colormap):
    inputs = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    image, ((x, y, _, _),) = render_explanation_grid(
        inputs, torch.zeros(1, 4, 4), min_cell=1, colormap=colormap, return_cells=True
    )
    panel = image[y : y + 4, x : x + 4]
    assert panel.min() == 0 and panel.max() == 255
    assert (panel[..., 0] == panel[..., 1]).all() and (panel[..., 1] == panel[..., 2]).all()


def test_a_long_title_goes_on_two_lines_of_large_letters():
    top = _annotate.header(302, "integrated_gradients  step 230", "per_image", apply_colormap, "inferno")
    top = top.permute(2, 0, 1)
    assert _line(top, _annotate.MARGIN, "INTEGRATED_GRADIENTS", 2)
    assert _line(top, 2 * _annotate.MARGIN + 14, "STEP 230", 2)
    one = _annotate.header(302, "grad_cam  step 230", "per_image", apply_colormap, "inferno")
    assert top.shape[1] - one.shape[0] == 14 + _annotate.MARGIN  # one line more
