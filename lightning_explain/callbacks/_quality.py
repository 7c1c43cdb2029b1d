"""ExplainCallback's and TokenExplainCallback's ``quality=``: faithfulness and localisation of each method's maps at
every event, beside random maps (the floor a map has to beat)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution.faithfulness import deletion_insertion, energy_in_mask, pointing_game
from lightning_explain.attribution.token_faithfulness import token_deletion_insertion
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import Target
from lightning_explain.core.tokens import TokenBatch

QUALITY_METRICS = ("deletion", "insertion", "pointing_game", "energy_in_mask")
"""The names ``quality=`` takes: deletion and insertion AUCs (faithfulness: forward passes of perturbed probes),
the pointing game and the energy in the mask (localisation: need ``masks=``)."""

LOCALISATION = ("pointing_game", "energy_in_mask")

SCALAR_NAMES = {
    "deletion": "deletion_auc",
    "insertion": "insertion_auc",
    "pointing_game": "pointing_game",
    "energy_in_mask": "energy_in_mask",
}
"""The scalar each metric is logged as: ``{prefix}/{method}/{name}`` and ``{prefix}/random/{name}``."""

HEAD_SCORES = {
    "classification": "softmax",
    "segmentation": "softmax",
    "multilabel": "sigmoid",
    "language_model": "softmax",
}
"""The score the deletion and insertion curves follow per head (the raw output for regression and callables; a
language model's next-token probability, or its continuation's)."""


def check_quality(
    quality: Sequence[str] | str | None, masks: Any, ndim: int = 3
) -> tuple[tuple[str, ...], Tensor | None]:
    """Validate ``quality=`` and ``masks=`` in ``__init__`` (masks of ``ndim`` dimensions: (N, H, W) for images,
    (N, T) for texts); return the metric names and the masks as bool."""
    if quality is None:
        if masks is not None:
            raise ValueError("masks= is read by quality=('pointing_game', 'energy_in_mask'); add them to quality.")
        return (), None
    names = (quality,) if isinstance(quality, str) else tuple(dict.fromkeys(quality))
    unknown = [name for name in names if name not in QUALITY_METRICS]
    if unknown or not names:
        raise ValueError(f"quality must name metrics from {list(QUALITY_METRICS)} (or be None), got {quality!r}.")
    local = [name for name in names if name in LOCALISATION]
    if local and masks is None:
        where = (
            "(H, W) mask per probe sample, (N, H, W), where the object is"
            if ndim == 3
            else ("(T,) mask per probe text, (N, T), on the tokens the model should rely on")
        )
        raise ValueError(f"quality={local} needs masks=: one bool {where}.")
    if masks is not None:
        if not isinstance(masks, Tensor) or masks.ndim != ndim or masks.shape[0] == 0:
            shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            what = "(N, H, W), one mask per probe sample" if ndim == 3 else "(N, T), one mask per probe text"
            raise ValueError(f"masks must be a tensor {what}; got {shape}.")
        if not local:
            raise ValueError("masks= is read by quality=('pointing_game', 'energy_in_mask'); add them to quality.")
        masks = masks.detach().bool().cpu()
    return names, masks


def check_masks_for_probe(masks: Tensor | None, inputs: Tensor) -> None:
    """At fit start: one mask per probe sample at the probe's resolution."""
    if masks is None:
        return
    expected = (inputs.shape[0], *inputs.shape[2:])
    if inputs.ndim != 4 or tuple(masks.shape) != tuple(expected):
        raise MisconfigurationException(
            f"ExplainCallback(masks=...) holds masks {tuple(masks.shape)}, but the probe is {tuple(inputs.shape)}: "
            f"pass one (H, W) mask per probe sample, {tuple(expected)}, in the probe's order (with probe=)."
        )


def quality_scalars(
    model: nn.Module,
    inputs: Tensor,
    maps: dict[str, Tensor],
    target: Target,
    *,
    metrics: Sequence[str],
    masks: Tensor | None,
    scores: str,
    output: OutputSpec,
    step: int,
    prefix: str,
) -> dict[str, Tensor]:
    """``{scalar name: 0-d tensor}``: each metric's mean over the probe for every method and for random maps.

    The random maps are drawn from a generator of their own seeded with the step (the training streams are not
    touched, and a resumed run draws the same maps).
    """
    shape = (inputs.shape[0], *inputs.shape[2:])

    def curves(method_maps: Tensor) -> tuple[Tensor, Tensor]:
        return deletion_insertion(model, inputs, method_maps, target, scores=scores, output=output)

    return _scalars(maps, _random_maps(shape, step, inputs.device), curves, metrics, masks, None, prefix)


def _random_maps(shape: tuple[int, ...], step: int, device: torch.device) -> Tensor:
    """Uniform random maps from a generator of their own seeded with ``step``."""
    generator = torch.Generator(device=device).manual_seed(int(step))
    return torch.rand(shape, generator=generator, device=device)


def _scalars(
    maps: dict[str, Tensor],
    random: Tensor,
    curves: Callable[[Tensor], tuple[Tensor, Tensor]],
    metrics: Sequence[str],
    masks: Tensor | None,
    within: Tensor | None,
    prefix: str,
) -> dict[str, Tensor]:
    """Each metric's mean for every method's maps and the random maps; ``curves(maps)`` gives deletion and
    insertion, the localisation metrics count only ``within`` (a text's real tokens) where given."""
    masks = None if masks is None else masks.to(random.device)
    values: dict[str, Tensor] = {}
    for method, method_maps in {**maps, "random": random}.items():
        key = f"{prefix}/{method}"
        if "deletion" in metrics or "insertion" in metrics:
            deletion, insertion = curves(method_maps)
            if "deletion" in metrics:
                values[f"{key}/{SCALAR_NAMES['deletion']}"] = deletion.mean()
            if "insertion" in metrics:
                values[f"{key}/{SCALAR_NAMES['insertion']}"] = insertion.mean()
        if "pointing_game" in metrics:
            values[f"{key}/pointing_game"] = pointing_game(method_maps, masks, within=within).float().mean()
        if "energy_in_mask" in metrics:
            values[f"{key}/energy_in_mask"] = energy_in_mask(method_maps, masks, within=within).mean()
    return values


def check_token_masks(masks: Tensor | None, ids: Tensor) -> None:
    """At fit start: one (T,) mask per probe text, the keyword's (or evidence's) tokens."""
    if masks is not None and tuple(masks.shape) != tuple(ids.shape):
        raise MisconfigurationException(
            f"TokenExplainCallback(masks=...) holds masks {tuple(masks.shape)}, but the probe's ids are "
            f"{tuple(ids.shape)}: pass one bool mask per probe text and token, {tuple(ids.shape)}, True on the tokens "
            "the model should rely on (with probe=, so the order is known)."
        )


def token_quality_scalars(
    model: nn.Module,
    batch: TokenBatch,
    maps: dict[str, Tensor],
    target: Target,
    *,
    metrics: Sequence[str],
    masks: Tensor | None,
    scores: str,
    output: OutputSpec,
    baseline_token_id: int | None,
    step: int,
    prefix: str,
) -> dict[str, Tensor]:
    """:func:`quality_scalars` for token maps: deletion and insertion replace the top-ranked tokens by the padding
    token (:func:`~lightning_explain.attribution.token_deletion_insertion`); the pointing game and the energy in the
    mask are taken over each text's real tokens. Random maps from a generator of their own seeded with the step."""
    ids, real = batch.input_ids, batch.real

    def curves(method_maps: Tensor) -> tuple[Tensor, Tensor]:
        return token_deletion_insertion(
            model, ids, method_maps, target, scores=scores, output=output, batch=batch,
            baseline_token_id=baseline_token_id,
        )  # fmt: skip

    random = _random_maps(tuple(ids.shape), step, ids.device) * real
    return _scalars(maps, random, curves, metrics, masks, real, prefix)
