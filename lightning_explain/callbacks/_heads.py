"""What a probe's model head is, what ``target=`` explains on it, and how each sample's outcome reads.

The head is decided at fit start from the model's output for the probe (after ``output=``) and the probe's
targets:

- ``"classification"``: logits (N, K) with K > 1 (class-index labels, or none);
- ``"multilabel"``: logits (N, K) whose probe targets have the same shape (multi-hot, trained with a sigmoid);
- ``"regression"``: one output per sample, (N,) or (N, 1);
- ``"segmentation"``: logits (N, K, H, W);
- ``"custom"``: a callable ``target=`` gives the score, whatever the output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.targets import ClassPicker, TargetSpec
from lightning_explain.render._annotate import sample_labels

HEADS = ("classification", "multilabel", "regression", "segmentation", "custom")
"""The heads a callback tells apart (see the module docstring)."""

MULTILABEL_THRESHOLD = 0.5
"""A multi-label sample's explained label counts as predicted where its sigmoid is at least this."""


def is_class_labels(targets: Tensor | None) -> bool:
    """Whether probe targets are class indices, an integer tensor (N,)."""
    return (
        isinstance(targets, Tensor)
        and targets.ndim == 1
        and not (targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool)
    )


def detect_head(logits: Tensor, targets: Tensor | None, target: Any, owner: str) -> str:
    """The head of a model whose (selected) output for the probe is ``logits``; see :data:`HEADS`.

    Raises:
        MisconfigurationException: an output no head fits; the message names ``output=`` and a callable target.
    """
    if callable(target):
        return "custom"
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        return "regression"
    if logits.ndim == 4:
        return "segmentation"
    if logits.ndim == 2:
        if targets is not None and tuple(targets.shape) == tuple(logits.shape):
            return "multilabel"
        return "classification"
    raise MisconfigurationException(
        f"{owner} explains class logits (N, K), one score per sample (N,) or segmentation logits (N, K, H, W); the "
        f"model's output for the probe has shape {tuple(logits.shape)}. Pass output= (a dict key, a tuple index or "
        "a callable) to pick the tensor to explain, or target= a callable (output, probe_targets) -> (N,) scores."
    )


def head_target_mode(owner: str, head: str, target: Any, targets: Tensor | None) -> str | int:
    """What ``target=`` means on this head: ``"label"``, ``"predicted"``, ``"output"``, ``"positive"``,
    ``"callable"`` or a class index. Raises ``MisconfigurationException`` for a choice the head cannot take."""
    if head == "custom":
        return "callable"
    if head == "regression":
        if target not in (None, "predicted", 0):
            raise MisconfigurationException(
                f"{owner}: the model returns one value per sample (a regression head), so it explains that output; "
                f"target={target!r} names a class. Leave target=None."
            )
        return "output"
    if head == "multilabel":
        return "positive" if target in (None, "label") else target
    if head == "segmentation":
        if target == "label":
            raise MisconfigurationException(
                f"{owner}: target='label' names no class on a segmentation head (N, K, H, W); pass target= a class "
                "index, or leave it None (each sample's largest predicted class other than class 0)."
            )
        return "predicted" if target is None else target
    class_labels = targets if is_class_labels(targets) else None
    from_labels = class_labels is not None and not bool((class_labels < 0).any())
    if target is None:
        return "label" if from_labels else "predicted"
    if target == "label" and class_labels is None:
        raise MisconfigurationException(
            f"{owner}(target='label') needs a probe with class labels, but the probe has none. "
            "Use target='predicted', pass probe=(inputs, targets), or give unpack_batch= that returns targets."
        )
    if target == "label" and not from_labels:
        unlabelled = int((class_labels < 0).sum())
        raise MisconfigurationException(
            f"{owner}(target='label'): {unlabelled} of the probe's {len(class_labels)} labels are negative (such as "
            "-100, unlabelled samples that the losses ignore), so they name no class to explain. Use "
            "target='predicted', or pass probe=(inputs, targets) with a label for every sample."
        )
    return target


def head_target(mode: str | int, probe: Probe, target: Any = None) -> TargetSpec:
    """The ``target`` argument of the attribution functions for a resolved mode on ``probe``."""
    if mode == "label":
        return probe.targets
    if mode in ("predicted", "output"):
        return None
    if mode == "positive":
        return ClassPicker(_highest_positive(probe.targets))
    if mode == "callable":
        labels = probe.targets
        return lambda output: target(output, labels)
    return mode


def _highest_positive(labels: Tensor) -> Callable[[Tensor], Tensor]:
    positive = labels > 0

    def pick(logits: Tensor) -> Tensor:
        masked = logits.masked_fill(~positive.to(logits.device), float("-inf"))
        return torch.where(positive.any(dim=1), masked.argmax(dim=1), logits.argmax(dim=1))

    return pick


def sample_outcomes(
    head: str, logits: Tensor, targets: Tensor | None, explained: Tensor | None
) -> tuple[dict[str, list | None], Tensor | None]:
    """Each probe sample's outcome (host lists, for the grid's text and metadata) and whether it counts as right.

    - classification: ``target`` (label), ``predicted``, ``confidence`` (softmax), ``correct``;
    - regression: ``target`` (true value) and ``predicted`` (the output), no ``correct``;
    - multilabel: ``explained`` (the label), ``confidence`` (its sigmoid), ``target`` (whether it is a true label),
      ``correct`` = the label predicted at :data:`MULTILABEL_THRESHOLD` exactly where it is true;
    - segmentation: ``explained`` (the class) and ``area`` (its share of the predicted mask);
    - custom: nothing.
    """
    outcomes: dict[str, list | None] = {"target": None, "predicted": None, "confidence": None, "correct": None}
    correct = None
    logits = logits.detach().float()
    if head == "classification":
        if is_class_labels(targets):
            outcomes["target"] = targets.cpu().tolist()
            correct = logits.argmax(dim=1) == targets
        confidence, predicted = logits.softmax(dim=1).max(dim=1)
        outcomes["predicted"] = predicted.cpu().tolist()
        outcomes["confidence"] = [round(value, 4) for value in confidence.cpu().tolist()]
    elif head == "regression":
        outcomes["predicted"] = [round(v, 4) for v in logits.reshape(len(logits)).cpu().tolist()]
        if targets is not None and targets.numel() == len(logits):
            outcomes["target"] = [round(v, 4) for v in targets.float().reshape(len(logits)).cpu().tolist()]
    elif head == "multilabel" and explained is not None:
        rows = torch.arange(len(logits), device=logits.device)
        probability = logits[rows, explained].sigmoid()
        outcomes["explained"] = explained.cpu().tolist()
        outcomes["confidence"] = [round(value, 4) for value in probability.cpu().tolist()]
        if targets is not None:
            truth = targets[rows, explained.to(targets.device)] > 0
            correct = (probability >= MULTILABEL_THRESHOLD) == truth.to(probability.device)
            outcomes["target"] = truth.cpu().tolist()
    elif head == "segmentation" and explained is not None:
        predicted = logits.argmax(dim=1)
        area = (predicted == explained[:, None, None].to(predicted.device)).flatten(1).float().mean(dim=1)
        outcomes["explained"] = explained.cpu().tolist()
        outcomes["area"] = [round(value, 4) for value in area.cpu().tolist()]
    if correct is not None:
        outcomes["correct"] = correct.cpu().tolist()
    return outcomes, correct


def outcome_labels(head: str, outcomes: dict[str, list | None], n: int) -> list[str] | None:
    """Each sample's bar text for its head (digits, capitals and ``. % - :``, what the grid font draws)."""
    if head == "classification":
        return sample_labels(outcomes, n)
    if head == "regression":
        predicted, truth = outcomes["predicted"], outcomes.get("target")
        words = [f"PRED {_number(p)}" for p in predicted]
        return words if truth is None else [f"TRUE {_number(t)} {w}" for t, w in zip(truth, words, strict=True)]
    if head == "multilabel" and outcomes.get("explained") is not None:
        truth = outcomes.get("target")
        words = [
            f"CLASS {k} {round(100 * p)}%" for k, p in zip(outcomes["explained"], outcomes["confidence"], strict=True)
        ]
        if truth is None:
            return words
        return [f"{w} {'LABEL' if t else 'NOT LABEL'}" for w, t in zip(words, truth, strict=True)]
    if head == "segmentation" and outcomes.get("explained") is not None:
        return [
            f"CLASS {k} AREA {round(100 * a)}%" for k, a in zip(outcomes["explained"], outcomes["area"], strict=True)
        ]
    return None


def _number(value: float) -> str:
    return (f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}").upper()
