"""OverfitMonitor's checks of its probes and masks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.probe import Probe
from lightning_explain.overfit.signals import PROBES, ProbeReading


def labelled_probe(given: Probe, source: str, *, has_masks: bool) -> Probe:
    """The probe's labelled samples, on the CPU: unlabelled ones (negative labels such as -100) are left
    out, as the losses ignore them. Raise when no sample is labelled, or when masks must line up."""
    if given.targets is None or not bool((given.targets >= 0).any()):
        raise MisconfigurationException(
            f"OverfitMonitor needs class labels for its {source} probe (its loss and accuracy), but the probe has "
            f"none{'' if given.targets is None else ' that are not negative (unlabelled, -100)'}. Pass "
            f"{source}_probe=(inputs, targets), or unpack_batch= that returns targets."
        )
    labelled = given.targets >= 0
    if not bool(labelled.all()) and has_masks:
        raise MisconfigurationException(
            f"OverfitMonitor: the {source} probe holds unlabelled samples (negative labels such as -100), which "
            f"it leaves out, so masks[{source!r}] no longer lines up with it. Pass {source}_probe= with labelled "
            "samples."
        )
    return Probe(given.inputs[labelled].cpu(), given.targets[labelled].cpu())


def check_mask_shape(mask: Tensor, name: str, reading: ProbeReading) -> Tensor:
    """``masks[name]`` on the maps' device, shaped like them; raise when it cannot be."""
    maps = reading.maps
    if maps is None:
        raise MisconfigurationException(f"masks[{name!r}] needs float probe inputs to explain; got integers.")
    given = mask
    if mask.ndim == maps.ndim + 1 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.shape != maps.shape:
        raise MisconfigurationException(
            f"masks[{name!r}] has shape {tuple(given.shape)}, but the {name} probe's maps have shape "
            f"{tuple(maps.shape)}: give one mask per probe sample, in the probe's order (the first probe_size "
            f"samples of the dataset unless you pass {name}_probe=), shaped like the input without channels."
        )
    return mask.to(maps.device, torch.bool)


def check_masks(masks: Any) -> dict[str, Tensor]:
    """Validate ``masks={"train": ..., "val": ...}`` (either key optional): bool tensors (N, ...), on the CPU."""
    if masks is None:
        return {}
    if not isinstance(masks, Mapping) or not masks or not set(masks) <= set(PROBES):
        keys = f" with keys {sorted(masks)}" if isinstance(masks, Mapping) else ""
        raise ValueError(
            "masks must be a dict with keys 'train' and/or 'val', each a bool tensor with one region-of-interest "
            f"mask per probe sample; got {type(masks).__name__}{keys}."
        )
    checked = {}
    for name, mask in masks.items():
        if not isinstance(mask, Tensor) or mask.ndim < 2:
            raise ValueError(f"masks[{name!r}] must be a tensor (N, ...) with one mask per probe sample, got {mask!r}.")
        checked[name] = mask.detach().bool().cpu()
    return checked
