"""Reading the probe's samples out of batches and DataLoaders: which targets count, and the first samples.

Private helpers of :mod:`lightning_explain.callbacks.probe`, which re-imports each of them. The
loader helpers take a DataLoader's first samples by index where the dataset allows it (so the
sampler's shuffling does not matter), else by iterating it; the caller draws inside
:func:`~lightning_explain.core.rng.preserved_global_rng`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset


def _targets(targets: Any, inputs: Tensor, class_targets: bool) -> Tensor | None:
    if class_targets:
        return _class_targets(targets, inputs)
    if isinstance(targets, Tensor) and targets.ndim >= 1 and targets.shape[0] == inputs.shape[0]:
        return targets
    return None


def _class_targets(targets: Any, inputs: Tensor) -> Tensor | None:
    if (
        isinstance(targets, Tensor)
        and targets.ndim == 1
        and targets.shape[0] == inputs.shape[0]
        and not targets.is_floating_point()
        and not targets.is_complex()
        and targets.dtype != torch.bool
    ):
        return targets
    return None


def _indexable(dataloader: Any) -> bool:
    dataset = getattr(dataloader, "dataset", None)
    return (
        isinstance(dataloader, DataLoader)
        and dataloader.batch_sampler is not None  # automatic batching, so collate_fn takes a list of samples
        and not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__getitem__")
        and hasattr(dataset, "__len__")
    )


def _collate_first(dataloader: DataLoader, size: int) -> Any:
    dataset = dataloader.dataset
    count = min(size, len(dataset))
    if count == 0:
        raise ValueError("The dataloader's dataset is empty, so no probe can be taken from it; pass probe=.")
    return dataloader.collate_fn([dataset[i] for i in range(count)])


def _iterate_until(
    dataloader: Any, size: int, unpack: Callable[[Any], Any], class_targets: bool
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    all_inputs, all_targets, all_kwargs, count = [], [], [], 0
    for batch in dataloader:
        inputs, targets, kwargs = _unpack(unpack, batch, class_targets)
        all_inputs.append(inputs)
        all_targets.append(targets)
        all_kwargs.append(kwargs)
        count += inputs.shape[0]
        if count >= size:
            break
    if not all_inputs:
        raise ValueError("The dataloader yields no batches, so no probe can be taken from it; pass probe=.")
    has_targets = all(t is not None for t in all_targets)
    kwargs = {key: torch.cat([k[key] for k in all_kwargs]) for key in all_kwargs[0]}
    return torch.cat(all_inputs), torch.cat(all_targets) if has_targets else None, kwargs


def _unpack(
    unpack: Callable[[Any], Any], batch: Any, class_targets: bool = True
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """``(inputs, targets, forward keyword arguments)`` from what ``unpack(batch)`` returns: ``(inputs, targets)``, or
    ``(inputs, targets, {name: tensor})`` for a model that takes keyword arguments beside its inputs."""
    result = unpack(batch)
    kwargs: Any = {}
    if isinstance(result, tuple) and len(result) == 3:
        *result, kwargs = result
        result = tuple(result)
    well_formed = isinstance(kwargs, dict) and all(isinstance(v, Tensor) for v in kwargs.values())
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Tensor) and well_formed):
        raise ValueError(
            "unpack_batch must return (inputs, targets) with inputs a tensor and targets a tensor or None (or, for "
            f"TokenExplainCallback, (inputs, targets, {{name: tensor}})); got {_shape_of(result, kwargs)}."
        )
    inputs, targets = result
    return inputs, _targets(targets, inputs, class_targets), dict(kwargs)


def _shape_of(result: Any, kwargs: Any) -> str:
    if isinstance(result, tuple):
        parts = [type(value).__name__ for value in result] + ([type(kwargs).__name__] if kwargs else [])
        return f"a tuple of ({', '.join(parts)})"
    return type(result).__name__


def _known_empty(loader: Any) -> bool:
    try:
        return _indexable(loader) and len(loader.dataset) == 0
    except TypeError:  # a dataset whose len cannot be taken
        return False
