"""Token inputs: ids (N, T), what the model's ``forward`` takes beside them, and the embedding that reads them.

Token ids are integers, so text models are explained at the output of the embedding layer that consumes
``input_ids``. This module is the one way the package calls a model on token ids and finds that layer:

- :class:`TokenBatch`: the ids, the attention mask (padding) and the other keyword arguments of ``forward``
  (``token_type_ids``, ``position_ids``, ...); called as ``batch(model, ids)`` by every pass (it is a
  :data:`~lightning_explain.core.gradients.ForwardFn`);
- :func:`resolve_embedding` / :func:`find_embedding`: the embedding layer (``get_input_embeddings()`` where the
  model or one of its submodules has it, else the ``nn.Embedding`` that consumes ``input_ids``);
- :class:`Continuation`: a causal language model's target of several tokens after each prompt.

Example:
    >>> batch = TokenBatch(input_ids, attention_mask)  # doctest: +SKIP
    >>> logits = batch(model, input_ids)  # model(input_ids=..., attention_mask=...)  # doctest: +SKIP
    >>> resolve_embedding(bert, None, batch)[0]  # doctest: +SKIP
    'bert.embeddings.word_embeddings'
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from lightning_explain.core.compiled import named_eager_modules, uncompiled
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.recording import record_outputs
from lightning_explain.core.targets import Target

TOKEN_FORWARD_KEYS = ("attention_mask", "token_type_ids", "position_ids")
"""The keyword arguments a text model's ``forward`` usually takes beside ``input_ids``."""


@dataclass(frozen=True)
class TokenBatch:
    """Token ids and what the model's ``forward`` takes beside them; calling it runs the model.

    The ids go in as ``input_ids=`` when ``forward`` names that parameter (Hugging Face models) or takes only
    keyword arguments, else as the first positional argument. ``attention_mask`` marks the real tokens (1) and the
    padding (0); it is passed on to ``forward`` unless ``mask_in_forward`` is False.

    Attributes:
        input_ids: integer ids (N, T).
        attention_mask: (N, T), 1 for real tokens, 0 for padding; ``None`` = no padding.
        forward_kwargs: further keyword arguments of ``forward`` (tensors with one row per sample are repeated
            with the ids when a method stacks copies of the batch).
        mask_in_forward: pass ``attention_mask`` to ``forward``.
        explained: bool (N, T), the positions whose tokens are explained (replaced on integrated gradients' path,
            ranked and replaced by deletion); the others (a :class:`Continuation` appended to the prompts) stay as they
            are. ``None`` = every position.
    """

    input_ids: Tensor
    attention_mask: Tensor | None = None
    forward_kwargs: Mapping[str, object] = field(default_factory=dict)
    mask_in_forward: bool = True
    explained: Tensor | None = None

    def __post_init__(self) -> None:
        ids = self.input_ids
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"input_ids must be token ids of shape (N, T) with N, T >= 1, got {shape}.")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(
                f"input_ids must be integer token ids, got dtype {ids.dtype}. For float inputs (embeddings, "
                "features) use the image or feature methods (saliency, feature_saliency)."
            )
        mask = self.attention_mask
        if mask is not None and (not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(ids.shape)):
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"attention_mask must have the ids' shape {tuple(ids.shape)}, got {shape}.")
        if not isinstance(self.forward_kwargs, Mapping):
            raise ValueError(f"forward_kwargs must be a dict of keyword arguments, got {type(self.forward_kwargs)}.")

    def __call__(self, model: nn.Module, input_ids: Tensor) -> object:
        """``model``'s output for ``input_ids`` (this batch's ids or ids of their shape) and the keyword arguments."""
        kwargs = dict(self.forward_kwargs)
        if self.attention_mask is not None and self.mask_in_forward:
            kwargs["attention_mask"] = self.attention_mask
        if ids_by_keyword(model):
            return model(input_ids=input_ids, **kwargs)
        return model(input_ids, **kwargs)

    @property
    def real(self) -> Tensor:
        """Bool (N, T): the real tokens (not padding)."""
        if self.attention_mask is None:
            return torch.ones_like(self.input_ids, dtype=torch.bool)
        return self.attention_mask != 0

    @property
    def replaceable(self) -> Tensor:
        """Bool (N, T): the real tokens that are explained (:attr:`real` and :attr:`explained`)."""
        return self.real if self.explained is None else self.real & self.explained.to(self.input_ids.device)

    def baseline_ids(self, token: int) -> Tensor:
        """The ids with every explained position set to ``token`` (the start of integrated gradients' path)."""
        baseline = torch.full_like(self.input_ids, token)
        return baseline if self.explained is None else torch.where(self.explained, baseline, self.input_ids)

    def last_positions(self) -> Tensor:
        """(N,) the position of each sample's last real token (0 for a sample without any)."""
        positions = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)
        return (self.real.long() * positions).amax(dim=1)

    def repeat(self, copies: int) -> TokenBatch:
        """``copies`` stacked copies (copy-major), as the multi-pass methods run them."""
        if copies == 1:
            return self
        n = self.input_ids.shape[0]

        def stacked(value: object) -> object:
            per_sample = isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == n
            return value.repeat(copies, *([1] * (value.ndim - 1))) if per_sample else value

        return replace(
            self,
            input_ids=stacked(self.input_ids),
            attention_mask=stacked(self.attention_mask),
            forward_kwargs={key: stacked(value) for key, value in self.forward_kwargs.items()},
            explained=stacked(self.explained),
        )

    def with_ids(self, input_ids: Tensor) -> TokenBatch:
        """The same keyword arguments with other ids of the same shape (tokens replaced, as in deletion)."""
        return replace(self, input_ids=input_ids)


def _parameters(model: nn.Module) -> Mapping[str, inspect.Parameter] | None:
    try:
        return inspect.signature(uncompiled(model).forward).parameters
    except (TypeError, ValueError):  # a forward whose signature cannot be read
        return None


def ids_by_keyword(model: nn.Module) -> bool:
    """Whether ``model``'s ``forward`` takes the ids as ``input_ids=`` (it names that parameter, or takes keyword
    arguments only) rather than as its first positional argument."""
    parameters = _parameters(model)
    if parameters is None:
        return False
    if "input_ids" in parameters:
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    kinds = [p.kind for p in parameters.values()]
    return inspect.Parameter.VAR_KEYWORD in kinds and not any(kind in positional for kind in kinds)


def forward_keywords(model: nn.Module, available: Sequence[str]) -> tuple[str, ...]:
    """Which of ``available`` (keys of a text batch) ``model``'s ``forward`` takes: those it names, or, for a
    ``forward(**batch)`` that names none, those of :data:`TOKEN_FORWARD_KEYS`."""
    parameters = _parameters(model)
    if parameters is None:
        return ()
    named = tuple(key for key in available if key in parameters and key != "input_ids")
    keywords_only = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()) and not any(
        p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in parameters.values()
    )
    if keywords_only:
        return tuple(key for key in available if key in TOKEN_FORWARD_KEYS)
    return named


def resolve_embedding(model: nn.Module, embedding: LayerSpec, batch: TokenBatch) -> tuple[str, nn.Module]:
    """``(name, module)`` of the embedding layer whose output the token methods explain.

    Args:
        model: the text model.
        embedding: a submodule, its dotted name, or ``None`` to find it (:func:`find_embedding`).
        batch: the ids (used only when ``embedding`` is ``None``).
    """
    if embedding is None:
        embedding = find_embedding(model, batch)
    return resolve_layer(model, embedding, batch.input_ids)


def find_embedding(model: nn.Module, batch: TokenBatch) -> nn.Module:
    """The embedding layer that reads ``input_ids``: ``get_input_embeddings()`` of the model or of its outermost
    submodule that has it (a Hugging Face model inside a LightningModule), else the ``nn.Embedding`` that one
    forward pass calls on the ids.

    Raises:
        ValueError: none found; the message names ``embedding=``.
    """
    names = dict(named_eager_modules(model))
    for module in names.values():
        getter = getattr(module, "get_input_embeddings", None)
        if not callable(getter):
            continue
        try:
            found = getter()
        except (NotImplementedError, AttributeError):  # a base class that leaves it to subclasses
            continue
        if isinstance(found, nn.Module) and any(found is m for m in names.values()):
            return found
    embeddings = {name: m for name, m in names.items() if isinstance(m, nn.Embedding)}
    ids = batch.input_ids

    def reads_ids(name: str, args: object) -> str | None:
        first = args[0] if isinstance(args, tuple) and args else None
        same = isinstance(first, Tensor) and first.shape == ids.shape and torch.equal(first.to(ids.device), ids)
        return name if same else None

    _, called = record_outputs(model, ids, embeddings, recorder=reads_ids, before=True, forward=batch)
    readers = [name for name, calls in called.items() if calls]
    if not readers:
        found = f"its nn.Embedding modules {sorted(embeddings)[:4]}" if embeddings else "no nn.Embedding module"
        raise ValueError(
            f"Cannot find the embedding layer that reads input_ids in {type(model).__name__}: it has no "
            f"get_input_embeddings() and {found} reads the ids in a forward pass. Pass embedding= (the module, or "
            "its dotted name from model.named_modules()) whose output (N, T, D) holds one vector per token."
        )
    return embeddings[readers[0]]


def padding_token(model: nn.Module, embedding: nn.Module | None, given: int | None, user: str) -> int:
    """The padding token's id: ``given``, else the model's ``config.pad_token_id`` (the model's or any submodule's),
    else the embedding's ``padding_idx``.

    Raises:
        ValueError: none of them is set; the message names ``user`` (what needs it) and ``baseline_token_id=``.
    """
    if given is not None:
        return given
    for module in model.modules():
        pad = getattr(getattr(module, "config", None), "pad_token_id", None)
        if isinstance(pad, int) and not isinstance(pad, bool):
            return pad
    padding = getattr(embedding, "padding_idx", None)
    if isinstance(padding, int):
        return padding
    raise ValueError(
        f"{user} replaces tokens with the padding token, and this model names none (no config.pad_token_id, no "
        "padding_idx on its embedding). Pass baseline_token_id= (e.g. tokenizer.pad_token_id, or "
        "tokenizer.eos_token_id for GPT-2-style models)."
    )


def check_embedding_output(activation: Tensor, batch: TokenBatch, name: str) -> Tensor:
    """``activation`` if it holds one vector per token, (N, T, D) for ids (N, T); else a ``ValueError`` naming
    ``embedding=``."""
    if activation.ndim != 3 or tuple(activation.shape[:2]) != tuple(batch.input_ids.shape):
        raise ValueError(
            f"The embedding layer {name!r} returned {tuple(activation.shape)} for token ids of shape "
            f"{tuple(batch.input_ids.shape)}; token attribution needs one vector per token, (N, T, D). Pass "
            "embedding= the layer that embeds input_ids."
        )
    return activation


@dataclass(frozen=True)
class Continuation:
    """A causal language model's target: the log-probability of ``token_ids`` following each prompt.

    The score is ``sum_i log p(c_i | prompt, c_<i)``: the tokens are placed after each prompt's last real token
    (before any right padding), the model runs on the longer sequences, and the attribution is read back at the
    prompt's tokens.

    Attributes:
        token_ids: the continuation, one for every prompt (a sequence of ints or a LongTensor (L,)), or one per
            prompt (N, L).

    Example:
        >>> token_attribution(gpt2, prompts, Continuation(tokenizer(" Paris")["input_ids"]))  # doctest: +SKIP
    """

    token_ids: Sequence[int] | Tensor

    def extend(self, batch: TokenBatch) -> tuple[TokenBatch, Target, Tensor]:
        """``(the batch with the continuation, the resolved target, the prompt's positions (N, T) in it)``.

        Raises:
            ValueError: empty or badly shaped ids, or keyword arguments with one value per token (they cannot be
                extended; pass them without the continuation).
        """
        ids = batch.input_ids
        n, length = ids.shape
        tokens = torch.as_tensor(self.token_ids, device=ids.device)
        if tokens.ndim == 1:
            tokens = tokens[None].expand(n, -1)
        if tokens.ndim != 2 or tokens.shape[0] != n or tokens.shape[1] == 0 or tokens.is_floating_point():
            raise ValueError(
                f"Continuation.token_ids must be integer ids (L,) or (N, L) with N = {n} and L >= 1, got shape "
                f"{tuple(tokens.shape)} {tokens.dtype}."
            )
        per_token = [k for k, v in batch.forward_kwargs.items() if isinstance(v, Tensor) and v.shape[:2] == ids.shape]
        if per_token:
            raise ValueError(
                f"A Continuation target cannot extend the per-token keyword arguments {per_token}; pass them without "
                "it, or explain one next token (target=None or a token id)."
            )
        extra = tokens.shape[1]
        last = batch.last_positions()
        steps = torch.arange(length, device=ids.device)[None]
        prompt_positions = torch.where(steps <= last[:, None], steps, steps + extra)  # right padding moves back
        continuation_positions = last[:, None] + 1 + torch.arange(extra, device=ids.device)[None]
        longer = ids.new_zeros(n, length + extra).scatter(1, prompt_positions, ids)
        longer = longer.scatter(1, continuation_positions, tokens.to(ids.dtype))
        mask = None
        if batch.attention_mask is not None:
            mask = batch.attention_mask.new_zeros(n, length + extra).scatter(1, prompt_positions, batch.attention_mask)
            mask = mask.scatter(1, continuation_positions, torch.ones_like(tokens, dtype=mask.dtype))
        explained = torch.ones_like(longer, dtype=torch.bool).scatter(1, continuation_positions, False)
        target = Target(index=tokens.long(), position=continuation_positions - 1, log_softmax=True)
        extended = replace(batch, input_ids=longer, attention_mask=mask, explained=explained)
        return extended, target, prompt_positions
