"""Is an explanation right? Faithfulness (deletion, insertion) and localisation (pointing game, energy in a mask).

- :func:`deletion_insertion`: the areas under the target-score curves as the pixels a map ranks highest are
  removed (deletion: a faithful map makes the score fall fast, a low area) or restored onto a baseline
  (insertion: a faithful map makes it rise fast, a high area), the mask shared across channels
  (Petsiuk et al. 2018, RISE). Forward passes only, every perturbed copy batched in memory-bounded chunks, no
  host synchronisation until the result.
- :func:`pointing_game`: whether each map's maximum lies in the region where the object is.
- :func:`energy_in_mask`: the share of each map's positive attribution inside the region (Wang et al. 2020).

Example:
    >>> maps = grad_cam(model, images)  # doctest: +SKIP
    >>> deletion, insertion = deletion_insertion(model, images, maps)  # doctest: +SKIP
    >>> hits = pointing_game(maps, masks)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain.attribution._multipass import (
    DEFAULT_CHUNK_SIZE,
    check_baseline,
    check_chunk_size,
    copies_per_chunk,
)
from lightning_explain.core.gradients import check_inputs, explanation_mode
from lightning_explain.core.outputs import OutputSpec, check_output_spec, select_output
from lightning_explain.core.targets import Target, TargetSpec, resolve_target
from lightning_explain.core.validation import check_int

SCORES = ("softmax", "sigmoid", "logits")
"""What the curves measure: the target's softmax probability (classifiers, as torchcam and RISE), its sigmoid
(multi-label) or the raw output (regression, or any score)."""


def deletion_insertion(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: TargetSpec = None,
    *,
    steps: int = 20,
    baseline: float | Tensor = 0.0,
    scores: str = "softmax",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    output: OutputSpec = None,
) -> tuple[Tensor, Tensor]:
    """Deletion and insertion AUCs of ``maps`` for ``model`` on ``inputs``: ``(deletion (N,), insertion (N,))``.

    Pixels are ranked from the highest map value to the lowest (ties in pixel order). At ``steps`` levels (every
    ``ceil(H * W / steps)`` pixels, and all of them) the top-ranked pixels are replaced by ``baseline`` in every
    channel (deletion) or taken from the input onto the baseline (insertion); each curve of the target's score
    against the perturbed fraction is integrated with the trapezoid rule. Equal to torchcam 0.5's
    ``DeletionInsertionMetric`` given the same maps, steps, baseline and softmax scores.

    Args:
        model: the model; run in eval mode, left exactly as found.
        inputs: images (N, C, H, W).
        maps: one map per input (N, H, W) (resized bilinearly when at another resolution).
        target: what each sample's score is, as for every method (``None`` = the predicted class); resolved once
            on the clean inputs.
        steps: the number of perturbation steps.
        baseline: what removed pixels become: a number or a tensor broadcastable to ``inputs``.
        scores: one of ``"softmax"``, ``"sigmoid"``, ``"logits"``
            (:data:`lightning_explain.attribution.faithfulness.SCORES`).
        chunk_size: perturbed inputs per forward pass.
        output: which tensor of the model's output (see :func:`~lightning_explain.attribution.explain`).

    Returns:
        float32 tensors (N,) on the inputs' device: a low deletion and a high insertion mean a faithful map.
    """
    check_inputs(inputs, need_float=True)
    if inputs.ndim != 4:
        raise ValueError(f"deletion_insertion needs images (N, C, H, W), got inputs of shape {tuple(inputs.shape)}.")
    check_int("steps", steps, low=1, expected="a positive int")
    check_chunk_size(chunk_size)
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {list(SCORES)}, got {scores!r}.")
    output = check_output_spec(output)
    maps = _check_maps(maps, inputs)
    n, _, height, width = inputs.shape
    pixels = height * width
    stride = -(-pixels // steps)
    counts = [*range(0, pixels, stride), pixels]
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=1)  # (N, P): each pixel's place in the order
    base = check_baseline(baseline, inputs)
    with explanation_mode(model, inputs.device), torch.no_grad():
        x = inputs.detach().clone()
        base = base.expand_as(x)
        logits = select_output(model(x), output)
        resolved = resolve_target(logits, target, output)
        clean = _scores(logits, resolved, scores)
        # Jobs: deletion at counts[1:] (its last = all baseline), insertion at counts[1:-1]; all baseline is shared.
        jobs = [("deletion", c) for c in counts[1:]] + [("insertion", c) for c in counts[1:-1]]
        values = []
        per_chunk = copies_per_chunk(n, chunk_size)
        for first in range(0, len(jobs), per_chunk):
            chunk = jobs[first : first + per_chunk]
            level = torch.tensor([c for _, c in chunk], device=x.device).view(-1, 1, 1)
            top = (ranks.unsqueeze(0) < level).view(len(chunk), n, 1, height, width)  # the top-ranked pixels
            deleting = torch.tensor([kind == "deletion" for kind, _ in chunk], device=x.device).view(-1, 1, 1, 1, 1)
            from_input = torch.where(deleting, ~top, top)
            perturbed = torch.where(from_input, x.unsqueeze(0), base.unsqueeze(0)).reshape(-1, *x.shape[1:])
            out = select_output(model(perturbed), output)
            values.append(_scores(out, resolved.repeat(len(chunk)), scores).view(len(chunk), n))
        values = torch.cat(values).float()
    levels = len(counts)
    deletion_curve = torch.cat([clean.float()[None], values[: levels - 1]])  # (levels, N)
    all_baseline = values[levels - 2]
    insertion_curve = torch.cat([all_baseline[None], values[levels - 1 :], clean.float()[None]])
    fractions = torch.tensor(counts, dtype=torch.float32, device=x.device) / pixels
    return (
        torch.trapezoid(deletion_curve, fractions, dim=0),
        torch.trapezoid(insertion_curve, fractions, dim=0),
    )


def _scores(logits: Tensor, target: Target, kind: str) -> Tensor:
    if kind == "softmax":
        if logits.ndim < 2 or logits.shape[1] < 2:
            raise ValueError(
                "scores='softmax' needs class logits (N, K) with K > 1; for one output per sample (regression) "
                "pass scores='logits'."
            )
        logits = logits.float().softmax(dim=1)
    elif kind == "sigmoid":
        logits = logits.float().sigmoid()
    return target.scores(logits)


def _check_maps(maps: Tensor, inputs: Tensor) -> Tensor:
    if not isinstance(maps, Tensor) or maps.ndim != 3 or maps.shape[0] != inputs.shape[0]:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be one map per input, (N, H, W) with N = {inputs.shape[0]}; got {shape}.")
    maps = maps.detach().float().to(inputs.device)
    if maps.shape[1:] != inputs.shape[2:]:
        maps = F.interpolate(maps[:, None], size=inputs.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return maps


def _check_masks(maps: Tensor, masks: Tensor, within: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(maps, Tensor) or maps.ndim not in (2, 3):
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else maps
        raise ValueError(f"maps must be (N, H, W) (or one value per token, (N, T)), got {shape!r}.")
    grid = maps.shape[1:]
    for name, value in (("masks", masks), ("within", within)):
        if value is None and name == "within":
            continue
        if (
            not isinstance(value, Tensor)
            or value.shape[-len(grid) :] != grid
            or value.ndim not in (len(grid), maps.ndim)
        ):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"{name} must be bool shaped like the maps {tuple(maps.shape)} or one {tuple(grid)} for every map, "
                f"got {shape}."
            )
    masks = masks.to(maps.device).bool().expand_as(maps)
    within = torch.ones_like(masks) if within is None else within.to(maps.device).bool().expand_as(maps)
    return maps.detach().float(), masks, within


def pointing_game(maps: Tensor, masks: Tensor, within: Tensor | None = None) -> Tensor:
    """Whether each map's maximum lies inside its mask: bool (N,). A constant map (no maximum) misses.

    Args:
        maps: (N, H, W), or one value per token (N, T).
        masks: bool, shaped like ``maps`` or one mask for every map: where the object (or the keyword) is.
        within: optional bool shaped like ``masks``: the entries that take part (a text's real tokens, not its
            padding); the maximum is taken over them.
    """
    maps, masks, within = _check_masks(maps, masks, within)
    flat = maps.flatten(1).masked_fill(~within.flatten(1), float("-inf"))
    peak = flat.argmax(dim=1)
    hit = masks.flatten(1).gather(1, peak[:, None])[:, 0]
    lowest = maps.flatten(1).masked_fill(~within.flatten(1), float("inf")).amin(dim=1)
    return hit & (flat.amax(dim=1) > lowest)


def energy_in_mask(maps: Tensor, masks: Tensor, within: Tensor | None = None) -> Tensor:
    """The share of each map's positive attribution inside its mask, float32 (N,) in [0, 1] (0 for a map with
    no positive value): the energy-based pointing game of Score-CAM (Wang et al. 2020). ``maps``, ``masks`` and
    ``within`` as in :func:`pointing_game`."""
    maps, masks, within = _check_masks(maps, masks, within)
    maps = maps * within
    positive = maps.clamp(min=0).flatten(1)
    inside = (positive * masks.flatten(1)).sum(dim=1)
    total = positive.sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
