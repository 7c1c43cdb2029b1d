"""Where a model looks, compared across probes and events: statistics of saliency maps.

Part of :mod:`lightning_explain.overfit.signals`, which re-exports each function: the share of
attribution inside a region, the mean map of a probe, the explanation gap between two probes and the
drift of each sample's map between events.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_explain.analysis.map_statistics import map_change


def mask_fraction(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's absolute attribution inside its mask, (N,); NaN for an all-zero map.

    ``masks`` are boolean (or 0/1) with the maps' shape. Compare with :func:`mask_area`: a model
    that ignores the region puts about its area's share of attribution in it.

    Example:
        >>> maps = torch.tensor([[[1.0, 3.0]]])
        >>> mask_fraction(maps, torch.tensor([[[False, True]]])).item()
        0.75
    """
    if masks.shape != maps.shape:
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not match maps of shape {tuple(maps.shape)}.")
    weights = maps.float().abs().flatten(1)
    inside = (weights * masks.flatten(1).to(weights)).sum(dim=1)
    total = weights.sum(dim=1)
    return torch.where(total > 0, inside / total, torch.full_like(total, float("nan")))


def mask_area(masks: Tensor) -> Tensor:
    """Share of each mask's pixels that are inside the region, (N,)."""
    return masks.flatten(1).float().mean(dim=1)


def mean_map(maps: Tensor) -> Tensor:
    """The average of maps each scaled to sum 1 (all-zero maps left out): where a probe is looked at, on average."""
    flat = maps.float().abs().flatten(1)
    total = flat.sum(dim=1, keepdim=True)
    keep = total.squeeze(1) > 0
    if not bool(keep.any()):
        return torch.zeros_like(maps[0], dtype=torch.float)
    return (flat[keep] / total[keep]).mean(dim=0).view(maps.shape[1:])


def explanation_gap(train_maps: Tensor, val_maps: Tensor) -> Tensor:
    """How differently a model explains two sets of inputs: the total variation distance of their mean maps.

    Each map is scaled to sum 1 and the maps of each set are averaged (:func:`mean_map`): where the
    model looks, on average. The result is half the L1 distance of the two averages: 0 when the
    model looks at the same places in both sets, 1 when at disjoint places. A shortcut that only
    the training inputs carry (a marker, a watermark) pulls the training average towards it.
    """
    if train_maps.shape[1:] != val_maps.shape[1:]:
        raise ValueError(
            f"maps of shape {tuple(train_maps.shape[1:])} and {tuple(val_maps.shape[1:])} cannot be compared; "
            "the training and validation probes need inputs of the same shape."
        )
    return 0.5 * (mean_map(train_maps) - mean_map(val_maps)).abs().sum()


def explanation_drift(ranks: Tensor, previous_ranks: Tensor) -> Tensor:
    """1 − the mean Spearman correlation of each sample's map with its map at the previous event.

    The package's one ``change`` statistic (:func:`~lightning_explain.analysis.map_statistics.map_change`)
    of the validation maps, for two events with maps of the same shape.
    """
    change = map_change(ranks, previous_ranks)
    if change is None:
        raise ValueError(
            f"explanation_drift needs ranks of one shape; got {tuple(ranks.shape)} and {tuple(previous_ranks.shape)}."
        )
    return change
