"""Signals of overfitting and shortcut learning, read from two fixed probe batches.

Pure functions, no Lightning: :class:`~lightning_explain.OverfitMonitor` calls them at each
event on a training probe and a validation probe.

- :func:`read_probe`: one forward pass in eval mode gives the loss, the accuracy, the loss
  gradient of every parameter and the saliency maps of the labelled class.
- :func:`gradient_alignment`: the cosine of the training and validation loss gradients. Below
  zero, a step that lowers the training loss raises the validation loss (to first order).
- :func:`mask_fraction`: the share of attribution inside a region of interest.
- :func:`explanation_gap`: how differently the model explains training and validation inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_explain.analysis.gradient_norms import loss_gradients_for_maps
from lightning_explain.analysis.map_statistics import map_change, map_ranks
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.losses import LossFn, per_sample_losses
from lightning_explain.core.outputs import OutputSpec, select_output
from lightning_explain.core.validation import check_int
from lightning_explain.overfit._maps import (
    explanation_drift,
    explanation_gap,
    mask_area,
    mask_fraction,
    mean_map,
)

# The public names, in the reference page's order; the map statistics are defined in _maps.py.
__all__ = [
    "PROBES",
    "DRIFT_SAMPLES",
    "ProbeReading",
    "read_probe",
    "gradient_norm",
    "gradient_alignment",
    "mask_fraction",
    "mask_area",
    "mean_map",
    "explanation_gap",
    "map_ranks",
    "explanation_drift",
    "paired_rise",
    "compare_probes",
]

PROBES = ("train", "val")
"""The two probes, by name."""

DRIFT_SAMPLES = 64
"""How many validation maps :func:`compare_probes` follows for the drift (their ranks are kept between events)."""


@dataclass
class ProbeReading:
    """What one pass over a probe gives (all detached, on the probe's device).

    Attributes:
        losses: the loss of each sample, (N,) float32.
        loss: their mean, a 0-d float32 tensor.
        correct: whether each sample's arg-max logit is its label, bool (N,).
        accuracy: their share, 0-d float32.
        gradients: the loss gradient of each requested parameter (``None`` for one the loss does not use).
        maps: saliency of the labelled class, ``max_c |dS/dx|`` for images (N, H, W), ``|dS/dx|``
            for other inputs (N, ...); ``None`` when maps were not asked for or the inputs are not float.
    """

    losses: Tensor
    loss: Tensor
    correct: Tensor
    accuracy: Tensor
    gradients: list[Tensor | None]
    maps: Tensor | None


def read_probe(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    parameters: Sequence[nn.Parameter],
    loss_fn: LossFn | None = None,
    with_maps: bool = True,
    chunk_size: int | None = 64,
    *,
    output: OutputSpec = None,
) -> ProbeReading:
    """Loss, accuracy, parameter gradients and saliency maps of ``model`` on one probe batch.

    In eval mode (no BatchNorm update, no dropout), ``chunk_size`` samples at a time: one forward
    pass per chunk, one backward pass for the parameter gradients of the loss and, with
    ``with_maps``, one for the input gradient of the labelled logits (the saliency of
    :func:`lightning_explain.attribution.saliency`). Chunks bound the memory of a large probe; the
    result does not depend on them. The model, its ``.grad`` and ``inputs`` are left as found.

    Args:
        model: a classifier returning logits (N, K), or an output they are picked out of with ``output``.
        inputs: the probe's inputs (N, ...).
        targets: class indices (N,).
        parameters: the parameters to differentiate the loss for.
        loss_fn: ``loss_fn(logits, targets) -> per-sample losses (N,)``; cross-entropy by default.
            The gradients are those of the mean loss.
        with_maps: whether to compute the saliency maps.
        chunk_size: samples per pass; ``None`` = all at once.
        output: which tensor of the model's output holds the logits
            (:func:`~lightning_explain.core.outputs.select_output`: by default a tensor as is, a dict's or
            ``ModelOutput``'s ``logits``, a tuple's first element; or a key, an index or a callable).
    """
    check_int("chunk_size", chunk_size, low=1, none_ok=True)
    if inputs.ndim < 1 or inputs.shape[0] == 0 or targets.shape[:1] != inputs.shape[:1]:
        raise ValueError(
            f"read_probe needs a non-empty batch with one target per sample; got inputs {tuple(inputs.shape)} "
            f"and targets {tuple(targets.shape)}."
        )
    parameters = list(parameters)
    n = inputs.shape[0]
    step = chunk_size or n
    losses, correct, maps = [], [], []
    gradients: list[Tensor | None] = [None] * len(parameters)
    with explanation_mode(model, inputs.device):
        for start in range(0, n, step):
            x = inputs[start : start + step].detach().clone()
            y = targets[start : start + step].clone()  # a clone: targets made under inference_mode can't be saved
            chunk_maps = with_maps and x.is_floating_point()
            if chunk_maps:
                x.requires_grad_(True)
            logits = select_output(model(x), output)
            chunk_losses = per_sample_losses(loss_fn, logits, y)
            grads, map_x, map_logits = loss_gradients_for_maps(
                model, x, logits, chunk_losses.sum() / n, parameters, chunk_maps, output=output
            )
            gradients = [_add(total, g) for total, g in zip(gradients, grads, strict=True)]
            if chunk_maps:
                (input_grad,) = torch.autograd.grad(map_logits.gather(1, y.view(-1, 1)).sum(), map_x)
                maps.append((input_grad.abs().amax(dim=1) if input_grad.ndim == 4 else input_grad.abs()).float())
            losses.append(chunk_losses.detach().float())
            correct.append(logits.detach().argmax(dim=1) == y)
    all_losses, all_correct = torch.cat(losses), torch.cat(correct)
    return ProbeReading(
        losses=all_losses,
        loss=all_losses.mean(),
        correct=all_correct,
        accuracy=all_correct.float().mean(),
        gradients=gradients,
        maps=torch.cat(maps) if maps else None,
    )


def _add(total: Tensor | None, gradient: Tensor | None) -> Tensor | None:
    if gradient is None:
        return total
    return gradient.detach() if total is None else total + gradient.detach()


def gradient_norm(gradients: Sequence[Tensor | None]) -> Tensor:
    """The L2 norm of all gradients together (``None`` entries count as zero), a 0-d tensor."""
    present = [g.float().flatten() for g in gradients if g is not None]
    if not present:
        raise ValueError("gradient_norm needs at least one gradient.")
    return torch.linalg.vector_norm(torch.cat(present))


def gradient_alignment(a: Sequence[Tensor | None], b: Sequence[Tensor | None]) -> Tensor:
    """Cosine similarity of two gradients given per parameter (``None`` = zero for that parameter).

    1: the two losses fall together; 0: unrelated; below 0: a step down one loss climbs the other.
    NaN when either gradient is all zero.

    Example:
        >>> gradient_alignment([torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 0.0])]).item()
        -1.0
    """
    if len(a) != len(b):
        raise ValueError(f"the two gradients have {len(a)} and {len(b)} parameters; they must match.")
    dot = norm_a = norm_b = None
    for ga, gb in zip(a, b, strict=True):
        if ga is None and gb is None:
            continue
        ga_ = torch.zeros_like(gb) if ga is None else ga
        gb_ = torch.zeros_like(ga) if gb is None else gb
        terms = ((ga_.float() * gb_.float()).sum(), ga_.float().square().sum(), gb_.float().square().sum())
        dot, norm_a, norm_b = terms if dot is None else (dot + terms[0], norm_a + terms[1], norm_b + terms[2])
    if dot is None:
        return torch.tensor(float("nan"))
    denominator = (norm_a * norm_b).sqrt()
    return torch.where(denominator > 0, dot / denominator, torch.full_like(dot, float("nan")))


def paired_rise(losses: Tensor, reference: Tensor) -> Tensor:
    """How significantly per-sample losses rose since a reference event: a paired t statistic.

    The mean of ``losses − reference`` over the same samples, divided by its standard error.
    Above about 3, the rise is too broad and consistent to be a few samples' noise. Because the
    probe is fixed, each sample is compared with itself, which makes the test sensitive where a
    comparison of two means would not be. 0 for no change; ±inf for a uniform shift.

    Example:
        >>> paired_rise(torch.tensor([1.1, 1.2, 1.3, 1.2]), torch.tensor([1.0, 1.0, 1.1, 1.0])).item() > 3
        True
    """
    if losses.shape != reference.shape or losses.ndim != 1:
        raise ValueError(f"paired_rise needs two (N,) tensors; got {tuple(losses.shape)} and {tuple(reference.shape)}.")
    difference = losses.double() - reference.double().to(losses.device)
    mean = difference.mean()
    if difference.numel() < 2:
        return torch.tensor(float("nan"))
    error = difference.std() / difference.numel() ** 0.5
    if float(error) == 0:
        return torch.tensor(0.0 if float(mean) == 0 else float("inf") * float(mean.sign()))
    return (mean / error).float()


def compare_probes(
    train: ProbeReading,
    val: ProbeReading,
    masks: Mapping[str, Tensor] | None = None,
    previous_ranks: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Every signal of one event, as 0-d tensors on the probes' device, and the validation maps' ranks.

    Always: the two losses, accuracies and their gaps, the gradient norms and ``grad_alignment``.
    When both probes have finite maps: ``explanation_gap``; ``explanation_drift`` of the first
    :data:`DRIFT_SAMPLES` validation maps against ``previous_ranks`` (the ranks this function
    returned at the previous event); with ``masks`` (per probe name, shaped like the maps),
    ``{name}_in_mask`` and ``{name}_mask_area``. The ranks returned are ``None`` when the maps are
    missing or not finite.
    """
    values = {
        "train_loss": train.loss,
        "val_loss": val.loss,
        "loss_gap": val.loss - train.loss,
        "train_accuracy": train.accuracy,
        "val_accuracy": val.accuracy,
        "accuracy_gap": train.accuracy - val.accuracy,
        "train_grad_norm": gradient_norm(train.gradients),
        "val_grad_norm": gradient_norm(val.gradients),
        "grad_alignment": gradient_alignment(train.gradients, val.gradients),
    }
    if train.maps is None or val.maps is None:
        return values, None
    if not bool(torch.isfinite(train.maps).all() and torch.isfinite(val.maps).all()):
        return values, None
    values["explanation_gap"] = explanation_gap(train.maps, val.maps)
    ranks = map_ranks(val.maps[:DRIFT_SAMPLES])
    drift = map_change(ranks, previous_ranks)
    if drift is not None:
        values["explanation_drift"] = drift
    readings = {"train": train, "val": val}
    for name, mask in (masks or {}).items():
        values[f"{name}_in_mask"] = mask_fraction(readings[name].maps, mask).nanmean()
        values[f"{name}_mask_area"] = mask_area(mask).mean()
    return values, ranks
