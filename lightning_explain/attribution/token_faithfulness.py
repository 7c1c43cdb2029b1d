"""Is a token attribution right? Deletion and insertion for text: the top-ranked tokens replaced by padding.

:func:`token_deletion_insertion` is :func:`~lightning_explain.attribution.deletion_insertion` for token ids: each
text's real tokens (not its padding) are ranked by the map, and at ``steps`` levels the top-ranked share of them is
replaced by the padding token (deletion: a faithful map makes the score fall fast, a low area) or put back onto a
text of padding tokens (insertion: a faithful map makes it rise fast, a high area); the attention mask and the other
keyword arguments stay as they are. Forward passes only, batched in memory-bounded chunks, no host synchronisation
until the result. The localisation metrics take token maps as they are: ``pointing_game(maps, keyword_masks,
within=real_tokens)`` and ``energy_in_mask`` (see :mod:`lightning_explain.attribution.faithfulness`).

Example:
    >>> maps = token_attribution(model, ids, attention_mask=mask)  # doctest: +SKIP
    >>> deletion, insertion = token_deletion_insertion(model, ids, maps, attention_mask=mask)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from lightning_explain.attribution._multipass import DEFAULT_CHUNK_SIZE, check_chunk_size, copies_per_chunk
from lightning_explain.attribution.faithfulness import SCORES
from lightning_explain.core.compiled import uncompiled
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec, check_output_spec, select_output
from lightning_explain.core.targets import Target, TargetSpec, TokenTarget, resolve_target
from lightning_explain.core.tokens import Continuation, TokenBatch, padding_token, resolve_embedding
from lightning_explain.core.validation import check_int


def token_deletion_insertion(
    model: nn.Module,
    input_ids: Tensor,
    maps: Tensor,
    target: TargetSpec = None,
    *,
    steps: int = 20,
    baseline_token_id: int | None = None,
    scores: str = "softmax",
    attention_mask: Tensor | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    embedding: LayerSpec = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    output: OutputSpec = None,
    batch: TokenBatch | None = None,
) -> tuple[Tensor, Tensor]:
    """Deletion and insertion AUCs of token ``maps``: ``(deletion (N,), insertion (N,))``.

    Each text's ``L`` real tokens are ranked from the highest map value to the lowest (ties in position order); at
    level ``k`` of ``steps`` the top ``ceil(k * L / steps)`` of them are replaced by ``baseline_token_id``
    (deletion) or kept while the other real tokens are (insertion). The curves of the target's score against the
    replaced share are integrated with the trapezoid rule.

    Args:
        model: the text model; run in eval mode, left exactly as found.
        input_ids: token ids (N, T).
        maps: one value per token (N, T), e.g. from :func:`~lightning_explain.attribution.token_attribution`.
        target: what each text's score is, as for :func:`~lightning_explain.attribution.token_attribution`
            (``None`` = the predicted class, or a causal LM's predicted next token, or a
            :class:`~lightning_explain.core.tokens.Continuation`); resolved once on the clean text.
        steps: the number of levels.
        baseline_token_id: the replacing token; ``None`` = the model's ``config.pad_token_id``, else its embedding's
            ``padding_idx``.
        scores: ``"softmax"`` (the target's probability; a continuation's joint probability), ``"sigmoid"`` or
            ``"logits"`` (a continuation's log-likelihood) (:data:`lightning_explain.attribution.faithfulness.SCORES`).
        attention_mask: (N, T), 0 on padding (never ranked, never replaced).
        forward_kwargs: further keyword arguments of ``forward``.
        embedding: the embedding layer, only to read its ``padding_idx`` when the config names no padding token.
        chunk_size: perturbed texts per forward pass.
        output: which tensor of the model's output (see :func:`~lightning_explain.attribution.explain`).
        batch: a ready :class:`~lightning_explain.core.tokens.TokenBatch` instead of ``input_ids``,
            ``attention_mask`` and ``forward_kwargs``.

    Returns:
        float32 tensors (N,) on the ids' device: a low deletion and a high insertion mean a faithful map.
    """
    check_int("steps", steps, low=1, expected="a positive int")
    check_chunk_size(chunk_size)
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {list(SCORES)}, got {scores!r}.")
    output = check_output_spec(output)
    if batch is None:
        batch = TokenBatch(input_ids, attention_mask, dict(forward_kwargs or {}))
    if not isinstance(maps, Tensor) or tuple(maps.shape) != tuple(batch.input_ids.shape):
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must hold one value per token, {tuple(batch.input_ids.shape)}, got {shape}.")
    maps = maps.detach().float().to(batch.input_ids.device)
    if isinstance(target, Continuation):  # scored after the prompts; its own tokens are never replaced
        batch, continuation, prompt_positions = target.extend(batch)
        maps = maps.new_zeros(batch.input_ids.shape).scatter(1, prompt_positions, maps)
        target = replace(continuation, output=output)
    ids, real = batch.input_ids, batch.replaceable
    if baseline_token_id is None and _needs_embedding(model):
        embedding = resolve_embedding(model, embedding, batch)[1]
    baseline = padding_token(model, embedding, baseline_token_id, "token_deletion_insertion")
    ranked = maps.masked_fill(~real, float("-inf"))
    ranks = torch.argsort(torch.argsort(ranked, dim=1, descending=True, stable=True), dim=1)  # real tokens first
    lengths = real.sum(dim=1)
    levels = torch.arange(steps + 1, device=ids.device)
    counts = torch.ceil(levels[:, None] * lengths[None] / steps).long()  # (steps + 1, N) tokens replaced per level
    jobs = [(True, level) for level in range(1, steps + 1)] + [(False, level) for level in range(1, steps)]
    n = ids.shape[0]
    with explanation_mode(model, ids.device), torch.no_grad():
        eager = uncompiled(model)
        logits = select_output(batch(eager, ids), output)
        spec = target if isinstance(target, Target) else TokenTarget(batch.last_positions(), target)
        resolved = resolve_target(logits, spec, output)
        clean = _token_scores(logits, resolved, scores)
        values = []
        per_chunk = copies_per_chunk(n, chunk_size)
        for first in range(0, len(jobs), per_chunk):
            chunk = jobs[first : first + per_chunk]
            deleting = torch.tensor([d for d, _ in chunk], device=ids.device).view(-1, 1, 1)
            top = ranks.unsqueeze(0) < counts[[level for _, level in chunk]].unsqueeze(2)  # (C, N, T)
            replaced = torch.where(deleting, top, real.unsqueeze(0) & ~top)
            perturbed = torch.where(replaced, baseline, ids.unsqueeze(0)).reshape(-1, ids.shape[1])
            stacked = batch.repeat(len(chunk))
            out = select_output(stacked(eager, perturbed), output)
            values.append(_token_scores(out, resolved.repeat(len(chunk)), scores).view(len(chunk), n))
        values = torch.cat(values).float()
    deletion_curve = torch.cat([clean.float()[None], values[:steps]])  # levels 0 .. steps
    all_replaced = values[steps - 1]
    insertion_curve = torch.cat([all_replaced[None], values[steps:], clean.float()[None]])
    fractions = levels.float() / steps
    return torch.trapezoid(deletion_curve, fractions, dim=0), torch.trapezoid(insertion_curve, fractions, dim=0)


def _needs_embedding(model: nn.Module) -> bool:
    """Whether the padding token can only come from the embedding (no ``config.pad_token_id`` anywhere)."""
    return not any(isinstance(getattr(getattr(m, "config", None), "pad_token_id", None), int) for m in model.modules())


def _token_scores(logits: Tensor, target: Target, kind: str) -> Tensor:
    """The target's score in ``kind``: probabilities over the last dimension (classes, or a causal LM's vocabulary);
    for a continuation, its probability (``"softmax"``) or its log-likelihood (``"logits"``)."""
    if target.log_softmax:
        if kind == "sigmoid":
            raise ValueError("A Continuation's score is a probability over the vocabulary: pass scores='softmax'.")
        log_likelihood = target.scores(logits).float()
        return log_likelihood.exp() if kind == "softmax" else log_likelihood
    if kind == "softmax":
        if logits.ndim < 2 or logits.shape[-1] < 2:
            raise ValueError(
                "scores='softmax' needs class logits (N, K) with K > 1 or a language model's (N, T, V); for one output "
                "per sample (regression) pass scores='logits'."
            )
        logits = logits.float().softmax(dim=-1)
    elif kind == "sigmoid":
        logits = logits.float().sigmoid()
    return target.scores(logits)
