"""Tests for lightning_explain.synthetic.make_shapes: shapes, masks, label noise and the corner-marker shortcut."""

from __future__ import annotations

import pytest
import torch

from lightning_explain.synthetic import MARKER_SIZE, SHAPES, ShapesData, make_shapes


def _corner_origin(label: int, size: int) -> tuple[int, int]:
    """Top-left pixel of the marker for ``label``: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    top = 1 if label in (0, 1) else size - 1 - MARKER_SIZE
    left = 1 if label in (0, 2) else size - 1 - MARKER_SIZE
    return top, left


def _corner_features(images: torch.Tensor) -> torch.Tensor:
    """The pixels of the four marker corners only, (N, 4 * MARKER_SIZE**2)."""
    size = images.shape[-1]
    patches = []
    for label in range(4):
        top, left = _corner_origin(label, size)
        patches.append(images[:, 0, top : top + MARKER_SIZE, left : left + MARKER_SIZE].flatten(1))
    return torch.cat(patches, dim=1)


def _logistic_regression_accuracy(train: ShapesData, test: ShapesData, steps: int = 200) -> float:
    """Fit a linear softmax classifier on the corner pixels of ``train``; its accuracy on ``test``."""
    x_train, x_test = _corner_features(train.images), _corner_features(test.images)
    weight = torch.zeros(x_train.shape[1], 4, requires_grad=True)
    bias = torch.zeros(4, requires_grad=True)
    for _ in range(steps):  # plain full-batch gradient descent
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, train.labels)
        grad_weight, grad_bias = torch.autograd.grad(loss, (weight, bias))
        with torch.no_grad():
            weight -= 0.5 * grad_weight
            bias -= 0.5 * grad_bias
    with torch.no_grad():
        predictions = (x_test @ weight + bias).argmax(dim=1)
    return (predictions == test.labels).float().mean().item()


# --- shapes, dtypes, determinism --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(5, 32), (3, 24), (2, 40)])
def test_make_shapes_shapes_and_dtypes(n, size):
    data = make_shapes(n, seed=0, size=size)
    assert isinstance(data, ShapesData)
    assert data.images.shape == (n, 1, size, size) and data.images.dtype == torch.float32
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.true_labels.shape == (n,) and data.true_labels.dtype == torch.int64
    assert data.masks.shape == (n, size, size) and data.masks.dtype == torch.bool
    assert len(data) == n
    images, labels = data.tensors()
    assert images is data.images and labels is data.labels


def test_make_shapes_is_deterministic_for_a_seed_and_differs_between_seeds():
    a = make_shapes(16, seed=3, marker=True, label_noise=0.3)
    b = make_shapes(16, seed=3, marker=True, label_noise=0.3)
    c = make_shapes(16, seed=4, marker=True, label_noise=0.3)
    for field in ("images", "labels", "true_labels", "masks"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.masks, c.masks)


def test_make_shapes_does_not_touch_the_global_rng():
    torch.manual_seed(11)
    state = torch.random.get_rng_state()
    make_shapes(8, seed=0, marker=True, label_noise=0.5)
    assert torch.equal(torch.random.get_rng_state(), state)
    # and the global RNG does not influence the data
    torch.manual_seed(99)
    again = make_shapes(8, seed=0, marker=True, label_noise=0.5)
    torch.manual_seed(11)
    assert torch.equal(again.images, make_shapes(8, seed=0, marker=True, label_noise=0.5).images)


# --- masks ------------------------------------------------------------------------------------------------------------


def test_masks_are_single_filled_squares_of_side_9_to_14_holding_every_bright_pixel():
    data = make_shapes(60, seed=1, noise=0.0)
    sides = set()
    for i in range(60):
        mask = data.masks[i]
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        top, bottom, left, right = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
        height, width = bottom - top + 1, right - left + 1
        box = torch.zeros_like(mask)
        box[top : bottom + 1, left : right + 1] = True
        assert torch.equal(mask, box), f"mask {i} is not a filled rectangle"
        assert height == width and 9 <= height <= 14, f"mask {i} is {height}x{width}"
        sides.add(height)
        bright = data.images[i, 0] > 0.5
        assert bright.any(), f"image {i} shows no shape"
        assert not (bright & ~mask).any(), f"image {i} has bright pixels outside its mask"
        assert (data.images[i, 0][~mask] == 0).all()  # noise=0: nothing at all outside the box
    assert len(sides) >= 4  # the sides vary


def test_every_class_draws_a_different_shape_filling_its_box():
    data = make_shapes(200, seed=2, noise=0.0)
    filled = {label: [] for label in range(len(SHAPES))}
    for i in range(200):
        mask = data.masks[i]
        filled[int(data.true_labels[i])].append(((data.images[i, 0] > 0.5) & mask).sum().item() / mask.sum().item())
    square = sum(filled[0]) / len(filled[0])
    assert square == pytest.approx(1.0)  # a square fills its bounding box
    for label in (1, 2, 3):  # disc, plus, ring fill less of it
        assert max(filled[label]) < 1.0


# --- labels and label noise -------------------------------------------------------------------------------------------


def test_no_label_noise_gives_labels_equal_to_true_labels():
    data = make_shapes(300, seed=0)
    assert torch.equal(data.labels, data.true_labels)
    assert set(data.labels.tolist()) == {0, 1, 2, 3}


def test_label_noise_changes_the_expected_share_of_labels():
    data = make_shapes(2000, seed=0, label_noise=0.4, size=24)
    changed = (data.labels != data.true_labels).float().mean().item()
    # 40% are redrawn uniformly from 4 classes; 3 in 4 of those land on a different class
    assert changed == pytest.approx(0.4 * (1 - 1 / 4), abs=0.04)


def test_full_label_noise_gives_uniform_labels_unrelated_to_the_shapes():
    data = make_shapes(2000, seed=1, label_noise=1.0, size=24)
    counts = torch.bincount(data.labels, minlength=4)
    assert counts.sum().item() == 2000
    assert all(abs(count - 500) < 80 for count in counts.tolist())  # about 3.5 standard deviations
    agreement = (data.labels == data.true_labels).float().mean().item()
    assert agreement == pytest.approx(0.25, abs=0.04)


@pytest.mark.parametrize("label_noise", [-0.1, 1.5])
def test_label_noise_outside_unit_interval_raises(label_noise):
    with pytest.raises(ValueError):
        make_shapes(4, seed=0, label_noise=label_noise)


# --- marker -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 28])
def test_marker_is_a_bright_square_in_the_corner_coded_by_the_label(size):
    data = make_shapes(40, seed=5, marker=True, size=size)
    assert set(data.labels.tolist()) == {0, 1, 2, 3}
    for i in range(40):
        top, left = _corner_origin(int(data.labels[i]), size)
        expected = torch.zeros(size, size, dtype=torch.bool)
        expected[top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
        assert torch.equal(data.images[i, 0] == 1.5, expected), f"image {i}: marker not where label says"
        assert not (data.masks[i] & expected).any(), f"image {i}: mask overlaps the marker"


def test_masks_never_overlap_any_marker_corner():
    data = make_shapes(100, seed=6)
    corners = torch.zeros(32, 32, dtype=torch.bool)
    for label in range(4):
        top, left = _corner_origin(label, 32)
        corners[top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
    assert not (data.masks & corners).any()


def test_marker_follows_noisy_labels_not_true_labels():
    data = make_shapes(200, seed=7, marker=True, label_noise=0.5)
    differ = (data.labels != data.true_labels).nonzero().flatten().tolist()
    assert len(differ) > 30
    for i in differ:
        top, left = _corner_origin(int(data.labels[i]), 32)
        assert (data.images[i, 0, top : top + MARKER_SIZE, left : left + MARKER_SIZE] == 1.5).all()
        true_top, true_left = _corner_origin(int(data.true_labels[i]), 32)
        assert not (
            data.images[i, 0, true_top : true_top + MARKER_SIZE, true_left : true_left + MARKER_SIZE] == 1.5
        ).any()


def test_no_marker_without_marker_flag():
    data = make_shapes(30, seed=5, noise=0.0)
    assert (_corner_features(data.images) == 0).all()


def test_marker_leaves_the_shape_and_mask_unchanged():
    plain = make_shapes(20, seed=8)
    marked = make_shapes(20, seed=8, marker=True)
    assert torch.equal(plain.masks, marked.masks)
    assert torch.equal(plain.labels, marked.labels)
    changed = plain.images != marked.images
    corners = torch.zeros(32, 32, dtype=torch.bool)
    for label in range(4):
        top, left = _corner_origin(label, 32)
        corners[top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
    assert not (changed[:, 0] & ~corners).any()


# --- arguments --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [0, 1, 5])
def test_num_classes_out_of_range_raises(num_classes):
    with pytest.raises(ValueError):
        make_shapes(4, seed=0, num_classes=num_classes)


@pytest.mark.parametrize("size", [8, 23])
def test_size_below_24_raises(size):
    with pytest.raises(ValueError):
        make_shapes(4, seed=0, size=size)


def test_two_classes_give_only_labels_zero_and_one():
    data = make_shapes(200, seed=0, num_classes=2, label_noise=0.5, marker=True)
    assert set(data.labels.tolist()) == {0, 1}
    assert set(data.true_labels.tolist()) == {0, 1}


# --- the shortcut is real ---------------------------------------------------------------------------------------------


def test_linear_classifier_on_corner_pixels_solves_marked_data_and_is_at_chance_on_unmarked():
    marked = _logistic_regression_accuracy(
        make_shapes(400, seed=10, marker=True, size=24), make_shapes(400, seed=11, marker=True, size=24)
    )
    unmarked = _logistic_regression_accuracy(make_shapes(400, seed=10, size=24), make_shapes(400, seed=11, size=24))
    assert marked >= 0.99
    assert unmarked < 0.35  # chance is 0.25
