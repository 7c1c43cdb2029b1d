"""What TokenExplainCallback reads and writes besides the maps: text batches, tokens as strings, class names, and
the searchable text (markdown) logged beside each picture."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_explain.callbacks.probe import TARGET_KEYS
from lightning_explain.core.tokens import padding_token

MARKERS = {"\u0120": " ", "\u2581": " ", "\u010a": "\\n", "\u0109": "\\t"}
"""Byte-level BPE and SentencePiece write a leading space as ``Ġ`` / ``▁`` (and a newline as ``Ċ``); drawn as such."""
_MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|"


def unpack_token_batch(batch: Any) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """Split a text batch into ``(input_ids, targets or None, {keyword: tensor})``.

    - a dict (a Hugging Face ``BatchEncoding`` or a collated dict): the ids under ``input_ids``, the targets under
      one of ``labels``, ``label``, ``y``, ``target``, ``targets``, and every other tensor with one row per text as
      a keyword argument (the callback passes on those the model's ``forward`` takes);
    - a tuple or list: ``(input_ids, labels)`` or ``(input_ids, attention_mask, labels)``;
    - a tensor: the ids alone.

    Raises:
        ValueError: no ids found; the message names ``unpack_batch=``.
    """
    if isinstance(batch, Tensor):
        return batch, None, {}
    if isinstance(batch, Mapping):
        ids = batch.get("input_ids")
        if not isinstance(ids, Tensor):
            raise ValueError(
                f"TokenExplainCallback reads token ids under 'input_ids', and the batch has keys "
                f"{sorted(map(str, batch))}. Pass unpack_batch=lambda batch: (input_ids, labels, "
                "{'attention_mask': mask}) to the callback."
            )
        key = next((k for k in TARGET_KEYS if isinstance(batch.get(k), Tensor)), None)
        kwargs = {
            str(k): v
            for k, v in batch.items()
            if k not in ("input_ids", key) and isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == ids.shape[0]
        }
        return ids, None if key is None else batch[key], kwargs
    if isinstance(batch, Sequence) and not isinstance(batch, str) and batch and isinstance(batch[0], Tensor):
        ids, rest = batch[0], list(batch[1:])
        kwargs = {}
        if rest and isinstance(rest[0], Tensor) and rest[0].shape == ids.shape:
            kwargs["attention_mask"] = rest.pop(0)
        return ids, rest[-1] if rest and isinstance(rest[-1], Tensor) else None, kwargs
    raise ValueError(
        f"Cannot read token ids from a batch of type {type(batch).__name__}. Pass unpack_batch=lambda batch: "
        "(input_ids, labels, {'attention_mask': mask}) to the callback, or probe= a dict of input_ids (and "
        "attention_mask, labels)."
    )


def padding_token_for(
    model: nn.Module, embedding: nn.Module, given: int | None, tokenizer: Any, needed: bool
) -> int | None:
    """The token integrated gradients start from and deletion puts in: ``given``, else the model's
    (``config.pad_token_id``, the embedding's ``padding_idx``), else the tokenizer's ``pad_token_id``; ``None`` when
    nothing ``needed`` one.

    Raises:
        ValueError: one is needed and none is found; the message names ``baseline_token_id=``.
    """
    if given is not None or not needed:
        return given
    try:
        return padding_token(model, embedding, None, "TokenExplainCallback")
    except ValueError:
        pad = getattr(tokenizer, "pad_token_id", None)
        if isinstance(pad, int) and not isinstance(pad, bool):
            return pad
        raise ValueError(
            "TokenExplainCallback: integrated_gradients and quality=('deletion', 'insertion') replace tokens with a "
            "padding token, and neither the model (config.pad_token_id, padding_idx) nor a tokenizer names one. Pass "
            "baseline_token_id= (e.g. tokenizer.eos_token_id for GPT-2-style models) or tokenizer=."
        ) from None


def check_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` if it can turn ids into text (``convert_ids_to_tokens`` or ``decode``) or is ``None``."""
    if tokenizer is None or callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        return tokenizer
    if callable(getattr(tokenizer, "decode", None)):
        return tokenizer
    raise ValueError(
        f"tokenizer must have convert_ids_to_tokens(ids) or decode(ids) (a Hugging Face tokenizer does), got "
        f"{type(tokenizer).__name__}."
    )


def token_strings(tokenizer: Any, ids: Tensor) -> tuple[list[list[str]], list[list[bool]]]:
    """Each text's tokens as strings (N lists of T) and, per token, whether it continues the word before it.

    The tokenizer's tokens (each decoded on its own for a tokenizer with ``decode`` only), or the ids themselves
    without a tokenizer. Word pieces are found as tokenizers mark them: WordPiece's ``##`` prefix; or, where a
    probe's tokens carry word-start markers (byte-level BPE's ``Ġ``, SentencePiece's ``▁``, a decoded leading space),
    every token without one (punctuation after a word included). Markers are dropped from the strings; the
    tokenizer's special tokens (``[CLS]``, ``</s>``) never join, and nothing joins them.
    """
    rows = ids.detach().cpu().tolist()
    if tokenizer is None:
        return [[str(i) for i in row] for row in rows], [[False] * len(row) for row in rows]
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if callable(convert):
        raw = [[str(token) for token in convert(row)] for row in rows]
    else:
        raw = [[str(tokenizer.decode([i])) for i in row] for row in rows]
    special = set(map(str, getattr(tokenizer, "all_special_tokens", ()) or ()))
    marked = any(token[:1] in WORD_START for row in raw for token in row)
    strings, joins = [], []
    for row in raw:
        joins.append(
            [
                k > 0 and token not in special and row[k - 1] not in special
                and (token.startswith("##") or (marked and token[:1] not in WORD_START))
                for k, token in enumerate(row)
            ]
        )  # fmt: skip
        strings.append([_readable(token) for token in row])
    return strings, joins


WORD_START = ("\u0120", "\u2581", " ")
"""What starts a word in byte-level BPE (``Ġ``), SentencePiece (``▁``) and decoded tokens (a space)."""


def joined_text(strings: Sequence[str], joins: Sequence[bool]) -> str:
    """Tokens written as text: a space before each, except before the pieces that continue a word."""
    pairs = enumerate(zip(strings, joins, strict=True))
    return "".join(("" if join or k == 0 else " ") + token for k, (token, join) in pairs)


def _readable(token: str) -> str:
    if token.startswith("##") and len(token) > 2:
        token = token[2:]
    for marker, meaning in MARKERS.items():
        token = token.replace(marker, meaning)
    return token.strip() or token


def label_names(model: nn.Module) -> dict[int, str] | None:
    """The class names a Hugging Face model's ``config.id2label`` gives (its own or a submodule's), unless they are
    the placeholders ``LABEL_0``, ``LABEL_1``, ...; else ``None``."""
    for module in model.modules():
        names = getattr(getattr(module, "config", None), "id2label", None)
        if isinstance(names, Mapping) and names:
            named = {int(k): str(v) for k, v in names.items()}
            if any(v != f"LABEL_{k}" for k, v in named.items()):
                return named
    return None


def tokens_markdown(
    method: str,
    step: int,
    tokens: Sequence[Sequence[str]],
    values: Tensor,
    real: Tensor,
    outcomes: Sequence[str],
    max_tokens: int,
    correct: Tensor | None = None,
    joins: Sequence[Sequence[bool]] | None = None,
) -> str:
    """The probe's texts as markdown for TensorBoard's Text tab: per text its outcome (✓ right, ✗ wrong where
    ``correct`` says), then its tokens with the most positive tenth in bold (``<strong>``) and the most negative
    tenth in italics (``<em>``), each word followed by their values; the pieces of a split word (``joins``) are
    written together; tokens are literal text (markdown and HTML characters escaped).

    TensorBoard removes colours from logged text, so emphasis marks the tokens the picture shades most.
    """
    values = values.detach().float().cpu()
    real = real.detach().cpu().bool()
    lines = [
        f"**{method}** at step {step}: **bold** = among the most positive tenth of a text's tokens, *italics* = among "
        "the most negative tenth, with their attribution in brackets.",
        "",
    ]
    for i, row in enumerate(tokens):
        positions = real[i].nonzero().flatten().tolist()
        shown = positions[:max_tokens]
        top, bottom = _extremes(values[i], positions)
        groups: list[list[str]] = []  # per word: its pieces, and the values of its emphasised pieces
        notes: list[list[str]] = []
        for t in shown:
            piece, value = _escape(row[t]), float(values[i, t])
            if not (joins and joins[i][t] and groups):
                groups.append([])
                notes.append([])
            emphasis = "strong" if t in top and value > 0 else "em" if t in bottom and value < 0 else None
            if emphasis:  # HTML tags (TensorBoard keeps strong and em): unambiguous inside a split word
                piece = f"<{emphasis}>{piece}</{emphasis}>"
                notes[-1].append(f"{value:+.3g}")
            groups[-1].append(piece)
        words = ["".join(g) + (f" ({', '.join(n)})" if n else "") for g, n in zip(groups, notes, strict=True)]
        more = f" … (+{len(positions) - len(shown)} tokens)" if len(positions) > len(shown) else ""
        mark = "" if correct is None else " ✓" if bool(correct[i]) else " ✗"
        lines += [f"text {i} · {outcomes[i]}{mark}  ", " ".join(words) + more, ""]
    return "\n".join(lines)


def _extremes(values: Tensor, positions: list[int]) -> tuple[set[int], set[int]]:
    """The positions of the highest and of the lowest tenth (at least one) of ``values`` at ``positions``."""
    if not positions:
        return set(), set()
    index = torch.tensor(positions)
    count = min(len(positions), max(1, math.ceil(0.1 * len(positions))))
    scores = values[index]
    return set(index[scores.topk(count).indices].tolist()), set(index[(-scores).topk(count).indices].tolist())


def _escape(token: str) -> str:
    """``token`` as literal text in markdown: HTML's special characters as entities, markdown's escaped."""
    token = html.escape(token, quote=False)
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in token) or "\u2423"
