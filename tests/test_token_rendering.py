"""The token pictures: shading by sign and size, padding left out, the outcome tag, the cut at max_tokens, the font."""

from __future__ import annotations

import pytest
import torch

from lightning_explain.render import _font
from lightning_explain.render._annotate import RIGHT, WRONG
from lightning_explain.render.tokens import NEGATIVE, POSITIVE, render_token_rows, token_colours


def colour_count(image: torch.Tensor, colour) -> int:
    """How many pixels of ``image`` (H, W, 3) are exactly ``colour`` (floats in [0, 1], as drawn)."""
    target = (torch.tensor(colour) * 255).round().to(torch.uint8)
    return int((image == target).all(dim=-1).sum())


def test_token_colours_run_from_white_to_orange_or_blue_by_sign_and_size():
    colours = token_colours(torch.tensor([2.0, -2.0, 1.0, 0.0, 5.0]), torch.tensor(2.0))
    torch.testing.assert_close(colours[0], torch.tensor(POSITIVE))
    torch.testing.assert_close(colours[1], torch.tensor(NEGATIVE))
    torch.testing.assert_close(colours[2], (torch.tensor(POSITIVE) + 1) / 2)  # half way from white
    torch.testing.assert_close(colours[3], torch.ones(3))
    torch.testing.assert_close(colours[4], torch.tensor(POSITIVE))  # beyond the scale: saturated
    assert torch.equal(token_colours(torch.zeros(3), torch.tensor(0.0)), torch.ones(3, 3))  # an all-zero text


def test_each_text_is_scaled_to_its_own_largest_value_and_padding_is_not_drawn():
    tokens = [["big", "small", "pad"], ["tiny", "neg", "pad"]]
    values = torch.tensor([[10.0, 1.0, 99.0], [0.01, -0.02, 99.0]])
    real = torch.tensor([[True, True, False], [True, True, False]])
    image, boxes = render_token_rows(tokens, values, real=real)
    assert image.dtype == torch.uint8 and image.shape[1] == 320 and image.shape[2] == 3
    assert colour_count(image, POSITIVE) > 0 and colour_count(image, NEGATIVE) > 0  # 10 and -0.02 at full strength
    assert len(boxes) == 2 and boxes[0][1] < boxes[1][1]  # one block per text, top to bottom
    with_padding, _ = render_token_rows(tokens, values)
    assert not torch.equal(with_padding, image)  # the 99s (padding) are drawn only when real says so


def test_the_tag_is_green_when_right_red_when_wrong_and_max_tokens_cuts_the_drawing():
    tokens = [[f"w{i}" for i in range(12)]] * 2
    values = torch.randn(2, 12)
    image, _ = render_token_rows(tokens, values, labels=["ok", "no"], correct=torch.tensor([True, False]))
    assert colour_count(image, RIGHT) > 0 and colour_count(image, WRONG) > 0
    cut, _ = render_token_rows(tokens, values, max_tokens=3, labels=["ok", "no"])
    assert cut.shape[0] <= image.shape[0] and not torch.equal(cut, image[: cut.shape[0]])
    plus = _font.text_masks(["+9"], keep_case=True)[0]  # the "+9" box: 9 tokens not drawn
    assert _contains(cut, plus)


def _contains(image: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether dark ink in ``image`` somewhere has exactly the glyph pattern ``mask``."""
    ink = (image.float().mean(dim=-1) < 100).float()[None, None]
    kernel = mask.float()[None, None] * 2 - 1  # +1 where ink must be, -1 where it must not
    hits = torch.nn.functional.conv2d(ink, kernel)
    return bool((hits == mask.sum()).any())


def test_bad_shapes_name_the_problem():
    with pytest.raises(ValueError, match=r"values must be \(N, T\) with one string per position"):
        render_token_rows([["a", "b"]], torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"values must be \(N, T\)"):
        render_token_rows([["a"]], torch.zeros(3))


def test_the_font_keeps_case_with_descenders_only_when_asked():
    assert torch.equal(_font.text_masks(["abc"]), _font.text_masks(["ABC"]))  # the grids' labels: capitals
    lower = _font.text_masks(["gy"], keep_case=True)[0]
    upper = _font.text_masks(["GY"], keep_case=True)[0]
    assert lower.shape == upper.shape == (_font.TALL_HEIGHT, _font.text_width(2))
    assert lower[7:].any() and not upper[7:].any()  # g and y reach below the baseline; capitals do not
    assert not torch.equal(lower, upper)
    assert torch.equal(_font.text_masks(["\u00e9"], keep_case=True), _font.text_masks(["?"], keep_case=True))


def test_the_pieces_of_a_split_word_touch():
    """Without joins three boxes with white gaps between them; with joins one unbroken box of colour."""
    tokens, values = [["sh", "ad", "ow"]], torch.ones(1, 3)

    def coloured_runs(joins) -> int:
        image, blocks = render_token_rows(tokens, values, joins=joins)
        row = image[blocks[0][1] + 3].numpy()  # a line of the boxes' top padding: no text, only background
        coloured = (row != 255).any(axis=-1)
        return int(coloured[0] + (coloured[1:] & ~coloured[:-1]).sum())

    assert coloured_runs(None) == 3
    assert coloured_runs([[False, True, True]]) == 1
