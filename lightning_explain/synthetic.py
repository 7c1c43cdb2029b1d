"""Synthetic images with known ground truth: where the object is, and what a shortcut looks like.

Real data cannot prove an explanation right: nobody knows which pixels a model *should* use.
Here we do. Each image holds one shape (the class) at a random place on a noisy background,
and comes with its region-of-interest mask (the shape's bounding box). Two switches make the
failures that :class:`~lightning_explain.OverfitMonitor` looks for:

- ``label_noise``: a share of the labels replaced by random classes (memorisation);
- ``marker=True``: a small bright square in a class-coded corner (a shortcut). Give it to the
  training images only, and a model can score perfectly in training by reading the corner.

Example:
    >>> data = make_shapes(256, seed=0, marker=True)
    >>> data.images.shape, data.labels.shape, data.masks.shape
    (torch.Size([256, 1, 32, 32]), torch.Size([256]), torch.Size([256, 32, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SHAPES = ("square", "disc", "plus", "ring")
"""The classes, in label order."""

MARKER_SIZE = 3
"""The side of the shortcut marker, in pixels."""

_MARGIN = MARKER_SIZE + 2  # shapes stay clear of the corner markers


@dataclass
class ShapesData:
    """A synthetic dataset.

    Attributes:
        images: float32 (N, 1, size, size), background noise around 0, shapes around 1.
        labels: int64 (N,): the labels to train on (``label_noise`` applied).
        true_labels: int64 (N,): the shape each image really shows.
        masks: bool (N, size, size): the shape's bounding box, the region a model should look at.
    """

    images: Tensor
    labels: Tensor
    true_labels: Tensor
    masks: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(images, labels)``, e.g. for ``TensorDataset(*data.tensors())``."""
        return self.images, self.labels


def make_shapes(
    n: int,
    *,
    seed: int,
    num_classes: int = 4,
    size: int = 32,
    label_noise: float = 0.0,
    marker: bool = False,
    noise: float = 0.35,
) -> ShapesData:
    """``n`` images of shapes (square, disc, plus, ring) on a noisy background.

    Args:
        n: how many images.
        seed: seeds a private generator (the global random state is not touched).
        num_classes: 2 to 4: the first ``num_classes`` of :data:`SHAPES`.
        size: the image side in pixels (at least 24).
        label_noise: the share of samples whose label is replaced by a class drawn at random
            (which may by chance be the right one).
        marker: add a bright ``MARKER_SIZE``-pixel square in the corner coded by the label
            (class 0 top left, 1 top right, 2 bottom left, 3 bottom right): a shortcut.
        noise: the standard deviation of the Gaussian background noise.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be between 2 and {len(SHAPES)}, got {num_classes}.")
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels, got {size}.")
    if not 0 <= label_noise <= 1:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}.")
    generator = torch.Generator().manual_seed(seed)
    true_labels = torch.randint(num_classes, (n,), generator=generator)
    images = noise * torch.randn(n, 1, size, size, generator=generator)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    rows = torch.arange(size).view(-1, 1).float()
    cols = torch.arange(size).view(1, -1).float()
    for i in range(n):
        side = int(torch.randint(9, 15, (), generator=generator))
        top, left = (int(v) for v in torch.randint(_MARGIN, size - _MARGIN - side + 1, (2,), generator=generator))
        brightness = 0.7 + 0.3 * float(torch.rand((), generator=generator))
        shape = _draw(SHAPES[int(true_labels[i])], rows - top, cols - left, side)
        images[i, 0] += brightness * shape
        masks[i, top : top + side, left : left + side] = True
    labels = true_labels.clone()
    relabel = torch.rand(n, generator=generator) < label_noise
    labels[relabel] = torch.randint(num_classes, (int(relabel.sum()),), generator=generator)
    if marker:
        for i in range(n):
            corner = int(labels[i])
            top = 1 if corner < 2 else size - 1 - MARKER_SIZE
            left = 1 if corner % 2 == 0 else size - 1 - MARKER_SIZE
            images[i, 0, top : top + MARKER_SIZE, left : left + MARKER_SIZE] = 1.5
    return ShapesData(images, labels, true_labels, masks)


def _draw(shape: str, y: Tensor, x: Tensor, side: int) -> Tensor:
    """A 0/1 picture of ``shape`` in the box [0, side)², with ``y``/``x`` the pixel offsets from its corner."""
    inside = (y >= 0) & (y < side) & (x >= 0) & (x < side)
    centre = (side - 1) / 2
    radius = ((y - centre) ** 2 + (x - centre) ** 2).sqrt()
    if shape == "square":
        picture = inside
    elif shape == "disc":
        picture = radius <= side / 2
    elif shape == "plus":
        bar = max(2, side // 4)
        low, high = (side - bar) // 2, (side - bar) // 2 + bar
        picture = inside & (((y >= low) & (y < high)) | ((x >= low) & (x < high)))
    else:  # ring
        picture = (radius <= side / 2) & (radius >= side / 2 - 2)
    return picture.float()
