"""render_feature_bars and render_sequence_strips: images drawn with torch alone."""

from __future__ import annotations

import pytest
import torch

from lightning_explain.render.signals import (
    CHAR_WIDTH,
    TEXT_HEIGHT,
    render_feature_bars,
    render_sequence_strips,
    text_mask,
)

ORANGE = torch.tensor([228, 90, 49], dtype=torch.uint8)
BLUE = torch.tensor([44, 114, 193], dtype=torch.uint8)


def bar_lengths(image: torch.Tensor, colour: torch.Tensor) -> list[int]:
    """Per row band of the chart, the number of pixels of ``colour`` on the row's middle line."""
    matches = (image == colour).all(dim=2)
    rows = matches.any(dim=1).nonzero().flatten().tolist()
    bands, current = [], []
    for r in rows:
        if current and r != current[-1] + 1:
            bands.append(current)
            current = []
        current.append(r)
    if current:
        bands.append(current)
    return [int(matches[band[len(band) // 2]].sum()) for band in bands]


def test_text_mask_draws_known_glyphs():
    one = text_mask("1")
    assert one.shape == (TEXT_HEIGHT, CHAR_WIDTH)
    assert one[::2, ::2][:, :3].int().tolist() == [[0, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 1, 1]]
    assert torch.equal(text_mask("ab"), text_mask("AB"))
    assert torch.equal(text_mask("~"), text_mask("?"))


def test_bars_are_sorted_by_magnitude_and_proportional():
    values = torch.tensor([0.1, 2.0, -1.0, 0.5, 0.0])
    image = render_feature_bars(values, top_k=3, bar_width=200)
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert bar_lengths(image, ORANGE) == [200, 50]  # features 1 (the largest) and 3
    assert bar_lengths(image, BLUE) == [100]  # feature 2 (negative, half)
    assert image.shape[0] == 3 * (TEXT_HEIGHT + 6) + 12  # three rows: 1, 2, 3
    full = render_feature_bars(values, top_k=10, bar_width=200)
    assert bar_lengths(full, ORANGE) == [200, 50, 10]  # a zero attribution draws no bar
    assert full.shape[0] == 5 * (TEXT_HEIGHT + 6) + 12


def test_bars_average_over_samples_and_draw_names():
    per_sample = torch.tensor([[1.0, 0.0, 3.0], [3.0, 0.0, 1.0]])  # means 2, 0, 2
    named = render_feature_bars(per_sample, feature_names=["age", "bmi", "glucose"], top_k=2)
    default = render_feature_bars(per_sample, top_k=2)
    assert bar_lengths(named, ORANGE) == [240, 240]
    assert named.shape[1] > default.shape[1]  # "GLUCOSE" is wider than "F2"
    left = CHAR_WIDTH * len("glucose") + 6
    ink = (named[:, 6:left].int().sum(dim=2) < 200).any(dim=1).nonzero().flatten()
    assert len(ink) > 0  # the label is drawn


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(2, 3, 4),), "must be"),
        ((torch.zeros(0),), "must be"),
        ((torch.zeros(3), ["a"]), "1 names for 3"),
        ((torch.zeros(3), None, 0), "top_k"),
    ],
)
def test_bar_errors(args, match):
    with pytest.raises(ValueError, match=match):
        render_feature_bars(*args)


def test_strips_show_each_time_steps_heat():
    maps = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    image = render_sequence_strips(maps, colormap="gray", strip_height=10, min_width=64)
    assert image.dtype == torch.uint8
    assert image.shape == (4 + 2 * (10 + 4), 4 + 64 + 4, 3)
    first = image[4 + 5, 4:-4, 0]  # a row through the first strip
    assert first[16:32].tolist() == [255] * 16 and first[:16].tolist() == [0] * 16
    second = image[4 + 14 + 5, 4:-4, 0]
    assert second[48:].tolist() == [255] * 16 and second[:48].max() == 0


def test_strips_with_a_line_plot_of_the_input():
    t = torch.linspace(0, 1, 32)
    inputs = torch.stack([t, 1 - t])  # rising, falling
    image = render_sequence_strips(torch.rand(2, 32), inputs, plot_height=20, strip_height=8, min_width=32)
    assert image.shape == (4 + 2 * (20 + 8 + 4), 40, 3)
    plot = image[4 : 4 + 20, 4:-4].int().sum(dim=2)  # the first sample's plot: dark where the line is
    dark = plot < 300
    assert dark[-1, 0] and dark[0, -1] and not dark[0, 0]  # rises from bottom left to top right
    multichannel = render_sequence_strips(torch.rand(2, 32), torch.randn(2, 32, 6), min_width=32)
    assert multichannel.shape[0] == image.shape[0] + 2 * (12 - 8 + 32 - 20)


def test_strip_errors():
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        render_sequence_strips(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="inputs must be"):
        render_sequence_strips(torch.zeros(2, 5), torch.zeros(2, 6))
