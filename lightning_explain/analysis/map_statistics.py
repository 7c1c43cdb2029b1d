"""Numbers that summarise attribution maps, worth plotting over a training run.

All functions take maps (N, ...) and return one value per sample (N,), computed with
tensor ops on the maps' device. Undefined values (an all-zero map, a constant map) are NaN
so that callers can leave them out with ``nanmean``. Where a ``mask`` (N, ...) is given, only its
True entries count (a text's real tokens, its padding left out).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def top_mass(maps: Tensor, fraction: float = 0.1, mask: Tensor | None = None) -> Tensor:
    """Share of each map's total attribution held by its top ``fraction`` of pixels.

    ``fraction`` for a uniform map, 1 when all attribution sits in the top pixels: how
    concentrated the explanation is. NaN for an all-zero map. With ``mask``, each map's top
    ``fraction`` of its own masked entries (a text's top 10% of its real tokens).

    Example:
        >>> top_mass(torch.ones(1, 10, 10)).item()
        0.1
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    flat = maps.float().flatten(1).abs()
    if mask is not None:
        keep = mask.to(flat.device).flatten(1).bool()
        flat = flat * keep
        counts = torch.ceil(fraction * keep.sum(dim=1) - 1e-9).clamp_min(1).long()
        cumulative = flat.sort(dim=1, descending=True).values.cumsum(dim=1)
        top = cumulative.gather(1, (counts - 1)[:, None])[:, 0]
    else:
        k = max(1, math.ceil(fraction * flat.shape[1] - 1e-9))  # 0.07 * 100 is 7.000000000000001
        top = flat.topk(k, dim=1).values.sum(dim=1)
    total = flat.sum(dim=1)
    return torch.where(total > 0, top / total, torch.full_like(total, float("nan")))


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 0 to P-1 of each row of (N, P), tied values sharing their average rank.

    One sort; each run of equal sorted values (NaNs, sorted last, count as equal) gets the
    mean of its first and last position (a running max / min over run boundaries),
    scattered back to the original order.
    """
    ordered, order = values.sort(dim=1)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]) & ~(ordered[:, 1:].isnan() & ordered[:, :-1].isnan())
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, positions, 0).cummax(dim=1).values
    last = torch.where(ends, positions, values.shape[1] - 1).flip(1).cummin(dim=1).values.flip(1)
    return torch.empty_like(ordered, dtype=torch.float).scatter_(1, order, (first + last).float() / 2)


def pearson(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pearson correlation of each pair of rows of two (N, ...) tensors (over ``mask``'s entries where given); NaN
    where a row is constant."""
    a = a.float().flatten(1)
    b = b.float().flatten(1)
    keep = torch.ones_like(a, dtype=torch.bool) if mask is None else mask.to(a.device).flatten(1).bool()
    # Test constancy on the values themselves: a constant row's float mean is not always exact.
    defined = (_spread(a, keep) > 0) & (_spread(b, keep) > 0)
    count = keep.sum(dim=1, keepdim=True).clamp_min(1)
    a = torch.where(keep, a - (a * keep).sum(dim=1, keepdim=True) / count, 0.0)
    b = torch.where(keep, b - (b * keep).sum(dim=1, keepdim=True) / count, 0.0)
    correlation = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))
    return torch.where(defined, correlation, torch.full_like(correlation, float("nan")))


def _spread(values: Tensor, keep: Tensor) -> Tensor:
    """Each row's largest minus smallest kept value (0 when fewer than two are kept)."""
    high = values.masked_fill(~keep, float("-inf")).amax(dim=1)
    low = values.masked_fill(~keep, float("inf")).amin(dim=1)
    return torch.where(keep.sum(dim=1) > 1, high - low, torch.zeros_like(high))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of maps, ties handled by average ranks.

    1 when both maps order pixels the same way, 0 when unrelated, -1 when reversed.
    """
    return pearson(average_ranks(a.float().flatten(1)), average_ranks(b.float().flatten(1)))


def map_ranks(maps: Tensor, mask: Tensor | None = None) -> Tensor:
    """Each map's pixel (or feature) ranks (N, P), ties averaged: all :func:`map_change` needs of an event's maps.

    With ``mask``, the masked entries are ranked among themselves (the others rank after them)."""
    values = maps.float().flatten(1)
    if mask is not None:
        values = values.masked_fill(~mask.to(values.device).flatten(1).bool(), float("inf"))
    return average_ranks(values)


def map_change(ranks: Tensor, previous: Tensor | None, mask: Tensor | None = None) -> Tensor | None:
    """``change``: 1 − the mean Spearman correlation of each sample's map with its map at the previous event.

    ``ranks`` and ``previous`` are :func:`map_ranks` of the two events' maps (over ``mask``'s entries where given,
    a text's real tokens). 0 when the model orders the pixels as before, 1 when unrelated, up to 2 when reversed.
    ``None`` when there is no previous event, or its maps had another shape (a new probe); NaN when every map is
    constant.

    Example:
        >>> maps = torch.rand(4, 8, 8)
        >>> map_change(map_ranks(maps), map_ranks(maps)).item()
        0.0
    """
    if previous is None or previous.shape != ranks.shape:
        return None
    return 1 - pearson(ranks, previous.to(ranks.device), mask).nanmean()


class ChangeSeries:
    """The ``change`` statistic along a run, one series per key (a method): what the callbacks log as ``…/change``.

    Keeps only the last event's ranks per key (never the maps), and saves them in checkpoints.

    Example:
        >>> series = ChangeSeries()
        >>> series.update("saliency", torch.rand(2, 4, 4)) is None  # the first event has nothing to compare with
        True
        >>> float(series.update("saliency", torch.rand(2, 4, 4))) >= 0
        True
    """

    def __init__(self) -> None:
        self._ranks: dict[str, Tensor] = {}

    def update(self, key: str, maps: Tensor, mask: Tensor | None = None) -> Tensor | None:
        """This event's change for ``key`` (see :func:`map_change`, over ``mask``'s entries where given), and
        remember its maps' ranks for the next."""
        ranks = map_ranks(maps, mask)
        change = map_change(ranks, self._ranks.get(key), mask)
        self._ranks[key] = ranks
        return change

    def state_dict(self) -> dict[str, Tensor]:
        """The last ranks per key, on the CPU."""
        return {key: ranks.cpu() for key, ranks in self._ranks.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Continue the series saved by :meth:`state_dict`."""
        self._ranks = dict(state)
