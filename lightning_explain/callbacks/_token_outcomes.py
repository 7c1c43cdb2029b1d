"""TokenExplainCallback's heads: what a text model's output is, what ``target=`` means on it, and what each probe
text's outcome reads, for the pictures, the text and the metadata.

A classifier's texts read as the image grids' cells do (true and predicted class, confidence, right or wrong), by
class name where the model's ``config.id2label`` has them; a causal language model's texts name the token (or the
continuation) explained after the prompt and its probability.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException
from lightning_explain.callbacks._heads import head_target_mode, sample_outcomes
from lightning_explain.core.targets import Target
from lightning_explain.core.tokens import Continuation


def token_head(logits: Tensor, embedding: nn.Module, target: Any, owner: str) -> str | None:
    """``"custom"`` for a callable target; ``"language_model"`` for per-token logits over the embedding's vocabulary
    (N, T, V); ``None`` for other outputs of one row per text (the image callbacks' heads, :func:`detect_head`).
    Raises for per-token outputs of another size."""
    if callable(target) and not isinstance(target, Continuation):
        return "custom"
    if logits.ndim != 3:
        return None
    vocabulary = getattr(embedding, "num_embeddings", None)
    if vocabulary is None or logits.shape[-1] == vocabulary:
        return "language_model"
    raise ValueError(
        f"{owner}: the model returns one row of {logits.shape[-1]} scores per token, {tuple(logits.shape)}, not a "
        f"language model's {vocabulary} (its vocabulary): a token-classification head. Pass target= a callable "
        "(output, probe_targets) -> (N,) scores that says which score to explain."
    )


def token_target_mode(head: str, target: Any, targets: Tensor | None) -> Any:
    """What ``target=`` means on this head: a language model's ``None`` (the predicted next token), token id or
    :class:`~lightning_explain.core.tokens.Continuation`; the image callbacks' modes otherwise
    (:func:`~lightning_explain.callbacks._heads.head_target_mode`)."""
    if head != "language_model":
        return head_target_mode("TokenExplainCallback", head, target, targets)
    if target == "label":
        raise MisconfigurationException(
            "TokenExplainCallback(target='label'): a language model has no class labels; leave target=None (the "
            "predicted next token), or pass a token id or a Continuation."
        )
    return None if target in (None, "predicted") else target


def text_outcomes(
    head: str,
    logits: Tensor,
    targets: Tensor | None,
    target: Target | None,
    names: dict[int, str] | None,
    token_text: Callable[[list[int]], str],
) -> tuple[dict[str, list | None], list[str], Tensor | None]:
    """``(per-sample outcomes for the metadata, each text's tag, whether each text is right or None)``.

    Args:
        head: the head found at fit start (``"language_model"`` or one of the image callbacks' heads).
        logits: the model's output for the probe.
        targets: the probe's targets.
        target: the resolved target of the event (its ``index`` and, for a language model, its ``position``).
        names: class names by index, or ``None``.
        token_text: ids -> readable text (the tokenizer's).
    """
    if head == "language_model":
        return _language_model(logits, target, token_text)
    explained = None if target is None else target.index
    samples, correct = sample_outcomes(head, logits, targets, explained)
    n = logits.shape[0]

    def name(k: int) -> str:
        return names.get(k, str(k)) if names else str(k)

    if head == "classification":
        pairs = zip(samples["predicted"], samples["confidence"], strict=True)
        predicted = [f"pred {name(p)} {round(100 * c)}%" for p, c in pairs]
        truth = samples["target"]
        tags = predicted if truth is None else [f"true {name(t)}  {p}" for t, p in zip(truth, predicted, strict=True)]
    elif head == "regression":
        tags = [f"pred {v:.3g}" for v in samples["predicted"]]
        if samples["target"] is not None:
            tags = [f"true {t:.3g}  {p}" for t, p in zip(samples["target"], tags, strict=True)]
    elif head == "multilabel" and samples.get("explained") is not None:
        truth = samples.get("target") or [None] * n
        tags = [
            f"label {name(k)} {round(100 * p)}%" + ("" if t is None else " (true)" if t else " (not a label)")
            for k, p, t in zip(samples["explained"], samples["confidence"], truth, strict=True)
        ]
    else:
        tags = ["" for _ in range(n)]
    return samples, tags, correct


def _language_model(
    logits: Tensor, target: Target, token_text: Callable[[list[int]], str]
) -> tuple[dict[str, list | None], list[str], None]:
    """The explained next token (or continuation) of each prompt and its probability; nothing is right or wrong."""
    n = logits.shape[0]
    rows = torch.arange(n, device=logits.device)[:, None]
    position = target.position.view(n, -1)
    index = target.index.view(n, -1)
    log_probs = logits[rows, position].float().log_softmax(dim=-1)  # (N, L, V)
    explained = log_probs.gather(2, index[:, :, None])[:, :, 0].sum(dim=1)
    predicted = log_probs[:, 0].argmax(dim=-1)
    ids = index.cpu().tolist()
    probability = explained.exp().cpu().tolist()
    samples: dict[str, list | None] = {
        "target": None,
        "predicted": predicted.cpu().tolist(),
        "confidence": [round(p, 4) for p in probability],
        "correct": None,
        "explained": [row[0] if len(row) == 1 else row for row in ids],
    }
    tags = [
        f"{'next' if len(row) == 1 else 'continuation'} '{token_text(row)}' {_percent(p)}"
        for row, p in zip(ids, probability, strict=True)
    ]
    return samples, tags, None


def _percent(probability: float) -> str:
    return f"{100 * probability:.3g}%" if probability >= 0.001 else f"{probability:.1e}"
