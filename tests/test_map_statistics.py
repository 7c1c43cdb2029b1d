"""Tests for lightning_explain.analysis.map_statistics against independent (NumPy / brute-force) references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_explain.analysis.map_statistics import average_ranks, pearson, spearman, top_mass


def _brute_average_ranks(row: list[float]) -> list[float]:
    """0-based ranks with ties sharing the mean of the positions they occupy, by counting."""
    ranks = []
    for value in row:
        below = sum(1 for other in row if other < value)
        equal = sum(1 for other in row if other == value)
        ranks.append(below + (equal - 1) / 2)
    return ranks


def _brute_spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = _brute_average_ranks(a.ravel().tolist())
    rb = _brute_average_ranks(b.ravel().tolist())
    return float(np.corrcoef(ra, rb)[0, 1])


# --- top_mass ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.5, 1.0])
def test_top_mass_uniform_map_gives_fraction(fraction):
    maps = torch.full((3, 10, 10), 2.5)
    result = top_mass(maps, fraction)
    assert result.shape == (3,)
    torch.testing.assert_close(result, torch.full((3,), fraction))


def test_top_mass_default_fraction_matches_docstring():
    assert top_mass(torch.ones(1, 10, 10)).item() == pytest.approx(0.1)


@pytest.mark.parametrize(("fraction", "pixels"), [(0.07, 100), (0.14, 50), (0.28, 25)])
def test_top_mass_uniform_map_gives_fraction_when_fraction_times_pixels_is_whole(fraction, pixels):
    # fraction * P in floating point is not whole (0.07 * 100 == 7.000000000000001): k must still be 7.
    result = top_mass(torch.ones(1, pixels), fraction)
    assert result.item() == pytest.approx(fraction)


def test_top_mass_one_hot_map_gives_one():
    maps = torch.zeros(2, 5, 5)
    maps[0, 3, 1] = 4.0
    maps[1, 0, 0] = 0.01
    torch.testing.assert_close(top_mass(maps, 0.1), torch.ones(2))
    torch.testing.assert_close(top_mass(maps, 0.01), torch.ones(2))  # k rounds up to at least one pixel


def test_top_mass_zero_map_is_nan_others_not():
    maps = torch.zeros(3, 4, 4)
    maps[1] = 1.0
    result = top_mass(maps, 0.25)
    assert torch.isnan(result[0]) and torch.isnan(result[2])
    assert result[1].item() == pytest.approx(0.25)


def test_top_mass_matches_numpy_reference():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 6, 7)).astype(np.float32)  # negative values count by magnitude
    fraction = 0.2
    result = top_mass(torch.from_numpy(maps), fraction)
    flat = np.abs(maps.reshape(4, -1)).astype(np.float64)
    k = math.ceil(fraction * flat.shape[1] - 1e-9)  # 0.2 * 42 = 8.4 -> 9 pixels
    assert k == 9
    expected = np.sort(flat, axis=1)[:, ::-1][:, :k].sum(axis=1) / flat.sum(axis=1)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5)


def test_top_mass_concentrated_map_is_larger_than_spread_map():
    spread = torch.ones(1, 8, 8)
    concentrated = torch.ones(1, 8, 8)
    concentrated[0, :2, :2] = 50
    assert top_mass(concentrated).item() > top_mass(spread).item()


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.0001, 2])
def test_top_mass_bad_fraction_raises(fraction):
    with pytest.raises(ValueError, match="fraction"):
        top_mass(torch.ones(1, 4, 4), fraction)


# --- average_ranks ----------------------------------------------------------------------------------------------------


def test_average_ranks_hand_computed_example():
    values = torch.tensor(
        [
            [10.0, 20.0, 20.0, 5.0, 20.0, 7.0],
            [3.0, 3.0, 3.0, 3.0, 3.0, 3.0],
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
            [1.0, 1.0, 2.0, 2.0, -1.0, 9.0],
        ]
    )
    expected = torch.tensor(
        [
            [2.0, 4.0, 4.0, 0.0, 4.0, 1.0],
            [2.5, 2.5, 2.5, 2.5, 2.5, 2.5],
            [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
            [1.5, 1.5, 3.5, 3.5, 0.0, 5.0],
        ]
    )
    result = average_ranks(values)
    assert result.dtype.is_floating_point
    torch.testing.assert_close(result, expected)


def test_average_ranks_matches_brute_force_with_many_ties():
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 4, (6, 25), generator=generator).float()
    result = average_ranks(values)
    expected = torch.tensor([_brute_average_ranks(row) for row in values.tolist()])
    torch.testing.assert_close(result, expected)


def test_average_ranks_distinct_values_are_a_permutation():
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(3, 11, generator=generator)
    result = average_ranks(values)
    expected = values.argsort(dim=1).argsort(dim=1).float()
    torch.testing.assert_close(result, expected)


def test_average_ranks_does_not_modify_input():
    values = torch.tensor([[3.0, 1.0, 2.0]])
    before = values.clone()
    average_ranks(values)
    torch.testing.assert_close(values, before)


# --- pearson ----------------------------------------------------------------------------------------------------------


def test_pearson_matches_numpy_corrcoef_per_row():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3, 4))
    b = 0.5 * a + rng.normal(size=(5, 3, 4))
    b[1] = -b[1]
    result = pearson(torch.from_numpy(a), torch.from_numpy(b))
    assert result.shape == (5,)
    expected = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(5)]
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_pearson_linear_relations_give_plus_minus_one():
    a = torch.arange(12.0).reshape(1, 3, 4)
    torch.testing.assert_close(pearson(a, 3 * a + 7), torch.ones(1))
    torch.testing.assert_close(pearson(a, -2 * a + 1), -torch.ones(1))


def test_pearson_constant_row_is_nan():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[2.0, 1.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    result = pearson(a, b)
    assert not torch.isnan(result[0])
    assert torch.isnan(result[1]) and torch.isnan(result[2])
    assert torch.isnan(pearson(b, a)[1])


def test_pearson_constant_row_with_inexact_value_is_nan():
    # The float32 mean of a constant row such as 0.1 (7+ elements) is not exactly 0.1: centring leaves a
    # tiny nonzero constant, which must still count as "undefined", not a perfect correlation.
    a = torch.full((1, 10), 0.1)
    b = torch.full((1, 10), 0.3)
    assert torch.isnan(pearson(a, b)).all()


# --- spearman ---------------------------------------------------------------------------------------------------------


def test_spearman_identical_reversed_and_monotone():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 4, 5, generator=generator)
    torch.testing.assert_close(spearman(maps, maps), torch.ones(3))
    reversed_maps = -maps
    torch.testing.assert_close(spearman(maps, reversed_maps), -torch.ones(3))
    torch.testing.assert_close(spearman(maps, torch.exp(maps)), torch.ones(3))
    torch.testing.assert_close(spearman(maps, maps**3 + 5), torch.ones(3))


def test_spearman_reversed_pixel_order_is_minus_one():
    a = torch.arange(20.0).reshape(1, 4, 5)
    b = torch.arange(20.0).flip(0).reshape(1, 4, 5) * 0.01
    torch.testing.assert_close(spearman(a, b), -torch.ones(1))


def test_spearman_is_not_pearson_for_nonlinear_monotone():
    a = torch.arange(1.0, 11.0).reshape(1, 10)
    b = a**6
    assert pearson(a, b).item() < 0.95
    assert spearman(a, b).item() == pytest.approx(1.0)


def test_spearman_matches_brute_force_reference_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 4, 6)).astype(np.float32)
    b = (a + rng.integers(-2, 3, size=a.shape)).astype(np.float32)
    b[2] = rng.integers(0, 3, size=b[2].shape)
    result = spearman(torch.from_numpy(a), torch.from_numpy(b))
    assert result.shape == (6,)
    expected = [_brute_spearman(a[i], b[i]) for i in range(6)]
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_spearman_constant_map_is_nan():
    a = torch.stack([torch.full((3, 3), 0.1), torch.arange(9.0).reshape(3, 3)])
    b = torch.stack([torch.arange(9.0).reshape(3, 3), torch.arange(9.0).reshape(3, 3)])
    result = spearman(a, b)
    assert torch.isnan(result[0])
    assert result[1].item() == pytest.approx(1.0)


def test_spearman_integer_maps():
    a = torch.tensor([[[1, 2], [3, 4]]])
    b = torch.tensor([[[10, 20], [40, 30]]])
    assert spearman(a, b).item() == pytest.approx(_brute_spearman(a.numpy(), b.numpy()))
