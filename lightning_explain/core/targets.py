"""One shared way to pick what each sample is explained for: a class, the output itself, a segment, or a score.

A :data:`TargetSpec` is what users pass; :func:`resolve_target` turns it, with the model's output for a batch,
into a :class:`Target`: the per-sample score every method differentiates or perturbs. It is resolved once per
call and handed to every pass, so all methods explain the same thing.

The heads it knows, by the shape of the (selected) output:

- classification logits (N, K): a class per sample (``None`` = the predicted class);
- one score per sample, (N,) or (N, 1) (regression): the output itself;
- segmentation logits (N, K, H, W): a class per sample; the score is the sum of that class's logits over the
  pixels predicted as that class (the mask fixed from the unperturbed prediction, as pytorch-grad-cam's
  ``SemanticSegmentationTarget``). ``None`` = the predicted class covering most pixels, class 0 (background by
  convention) only when nothing else is predicted;
- a causal language model's logits (N, T, V), through a :class:`TokenTarget`: a token per sample, read at each
  sample's last prompt position (``None`` = the predicted next token); a continuation of several tokens reads their
  log-probabilities at consecutive positions (:class:`~lightning_explain.core.tokens.Continuation`);
- anything else through a callable ``(output) -> (N,) scores`` (detection, embeddings, multi-task heads).

Example:
    >>> target = resolve_target(logits, None)  # doctest: +SKIP
    >>> target.scores(logits)  # each sample's predicted-class logit, (N,)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lightning_explain.core.outputs import OutputSpec, select_output
from lightning_explain.core.validation import is_int

ScoreFn = Callable[[Tensor], Tensor]
"""``(selected output) -> (N,)``: each sample's score to explain."""

TargetSpec = int | Tensor | ScoreFn | None
"""``None`` = the predicted class (the output itself for one score per sample); an ``int`` = that class for every
sample; a ``LongTensor`` (N,); a callable ``(output) -> (N,) scores``; a :class:`ClassPicker`; or an already
resolved :class:`Target`."""


@dataclass(frozen=True)
class ClassPicker:
    """A target that picks each sample's class from the model's (detached) output when the batch is explained.

    Example: a multi-label model's highest-scoring positive label,
    ``ClassPicker(lambda logits: logits.masked_fill(labels == 0, float("-inf")).argmax(dim=1))``.

    Attributes:
        pick: ``(output) -> (N,)`` integer class indices.
    """

    pick: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TokenTarget:
    """What a text model's sample is explained for, whatever its head turns out to be.

    For per-token logits (N, T, V) (a causal language model): the token ``target`` (``None`` = the predicted one,
    an ``int`` token id for every sample, or a LongTensor (N,)) read at ``positions``, each sample's last prompt
    position, so the score is the logit of the next token. For any other output, ``target`` as it is (a class, a
    score). Resolved by :func:`resolve_target` once the model's output is known.

    Attributes:
        positions: (N,) the position whose logits predict the next token (the last real token of each prompt).
        target: the :data:`TargetSpec` to resolve at those positions (or on the output as it is).
    """

    positions: Tensor
    target: object = None


@dataclass(frozen=True)
class Target:
    """What each sample of one batch is explained for, resolved once and shared by every pass.

    Attributes:
        index: the class per sample (N,) (classification and segmentation), ``None`` otherwise.
        mask: segmentation only: the pixels predicted as the sample's class (N, H, W), fixed at resolution.
        score_fn: a user's callable ``(output) -> (N,)``, when given.
        output: which tensor of the model's output is read (:func:`~lightning_explain.core.outputs.select_output`).
        position: per-token outputs (N, T, V) only: the position each token in ``index`` is read at, (N,) or (N, L)
            (``index`` then has the same shape).
        log_softmax: read log-probabilities at ``position`` instead of logits, summed over the L tokens (a
            continuation's log-likelihood).
    """

    index: Tensor | None = None
    mask: Tensor | None = None
    score_fn: ScoreFn | None = None
    output: OutputSpec = None
    position: Tensor | None = None
    log_softmax: bool = False

    def select(self, raw_output: object) -> Tensor:
        """The explained tensor of the model's raw output."""
        return select_output(raw_output, self.output)

    def scores(self, logits: Tensor) -> Tensor:
        """Each sample's score (N,) in ``logits`` (the selected output of a batch of ``len(index)`` samples)."""
        if self.score_fn is not None:
            scores = self.score_fn(logits)
            if not isinstance(scores, Tensor) or scores.shape != (logits.shape[0],):
                shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                raise ValueError(
                    f"A target callable must return one score per sample, shape ({logits.shape[0]},); got {shape}."
                )
            return scores
        if self.index is None:
            return logits.reshape(logits.shape[0])
        if self.position is not None:
            return self._token_scores(logits)
        picked = logits.gather(1, self.index.view(-1, *([1] * (logits.ndim - 1))).expand(-1, 1, *logits.shape[2:]))
        if self.mask is None:
            return picked[:, 0]
        return (picked[:, 0] * self.mask.to(picked.dtype)).flatten(1).sum(dim=1)

    def _token_scores(self, logits: Tensor) -> Tensor:
        if logits.ndim != 3:
            raise ValueError(
                f"This target reads token positions of per-token logits (N, T, V), but the output has shape "
                f"{tuple(logits.shape)}. Leave target=None (or give a class) for a model with one output per sample."
            )
        n = logits.shape[0]
        rows = torch.arange(n, device=logits.device)[:, None]
        picked = logits[rows, self.position.view(n, -1).to(logits.device)]  # (N, L, V)
        if self.log_softmax:
            picked = picked.float().log_softmax(dim=-1)
        return picked.gather(2, self.index.view(n, -1, 1).to(logits.device)).flatten(1).sum(dim=1)

    def repeat(self, copies: int) -> Target:
        """The target for ``copies`` stacked copies of the batch (copy-major), as the multi-pass methods run them."""
        if copies == 1:
            return self
        index, mask, position = (_stack(t, copies) for t in (self.index, self.mask, self.position))
        score_fn = self.score_fn
        if score_fn is not None:
            score_fn = _per_copy(score_fn, copies)
        return replace(self, index=index, mask=mask, score_fn=score_fn, position=position)


def _stack(values: Tensor | None, copies: int) -> Tensor | None:
    """``copies`` copies of per-sample values (N, ...) stacked along the first dimension (``None`` stays ``None``)."""
    return None if values is None else values.repeat(copies, *([1] * (values.ndim - 1)))


def _per_copy(score_fn: ScoreFn, copies: int) -> ScoreFn:
    """A score callable applied to each copy of the batch on its own (it may depend on the batch's own samples)."""

    def scores(logits: Tensor) -> Tensor:
        return torch.cat([score_fn(chunk) for chunk in logits.chunk(copies)])

    return scores


def resolve_target(logits: Tensor, target: TargetSpec | Target, output: OutputSpec = None) -> Target:
    """The :class:`Target` for a batch whose selected output is ``logits``.

    Raises:
        ValueError / TypeError: a target that does not fit the output; the message names the fix.
    """
    if isinstance(target, Target):
        return target
    if isinstance(target, TokenTarget):
        if logits.ndim == 3 and _is_class_choice(target.target):
            return _next_token_target(logits, target, output)
        target = target.target
    if isinstance(target, ClassPicker):
        with torch.inference_mode(False):
            target = target.pick(logits.detach())
    if callable(target) and not isinstance(target, Tensor):
        return Target(score_fn=target, output=output)
    with torch.inference_mode(False):  # indices made under inference mode could not be saved for backward
        if logits.ndim == 4:
            return _segment_target(logits, target, output)
        return Target(index=select_targets(logits, target), output=output)


def _is_class_choice(target: object) -> bool:
    """Whether ``target`` names classes (``None``, an int, a tensor of indices), not a callable or a picker."""
    return target is None or isinstance(target, Tensor) or is_int(target)


def _next_token_target(logits: Tensor, target: TokenTarget, output: OutputSpec) -> Target:
    with torch.inference_mode(False):
        positions = target.positions.to(logits.device).long().clone()
        if positions.shape != (logits.shape[0],):
            shape = tuple(positions.shape)
            raise ValueError(f"TokenTarget.positions must be (N,) = ({logits.shape[0]},), got {shape}.")
        rows = logits.detach()[torch.arange(logits.shape[0], device=logits.device), positions]  # (N, V)
        return Target(index=select_targets(rows, target.target), position=positions, output=output)


def _segment_target(logits: Tensor, target: TargetSpec, output: OutputSpec) -> Target:
    n, k = logits.shape[:2]
    predicted = logits.detach().argmax(dim=1)
    if target is None:
        area = torch.nn.functional.one_hot(predicted.flatten(1), k).sum(dim=1)  # (N, K) pixels per class
        if k > 1:
            area[:, 0] = torch.where(area[:, 1:].sum(dim=1) > 0, -1, area[:, 0])  # background only if alone
        index = area.argmax(dim=1)
    else:
        index = select_targets(logits.detach().flatten(2).mean(dim=2), target)
    mask = predicted == index[:, None, None]
    return Target(index=index, mask=mask, output=output)


def select_targets(logits: Tensor, target: TargetSpec) -> Tensor | None:
    """Return the class index per sample, shape (N,), or ``None`` for a single-output model ((N,) or (N, 1)).

    Raises ``ValueError`` naming the problem when ``target`` does not fit ``logits``.
    """
    if isinstance(target, Target):
        return target.index
    single = logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)
    if single and (target is None or (is_int(target) and target == 0)):
        return None
    if logits.ndim == 1:
        raise ValueError(
            f"The model returns one score per sample, so the only valid target is None (or 0); got {target!r}."
        )
    if logits.ndim == 4:
        return resolve_target(logits, target).index
    if logits.ndim != 2:
        raise ValueError(
            f"The model must return logits (N, K), scores (N,) or segmentation logits (N, K, H, W), got shape "
            f"{tuple(logits.shape)}. Pass output= to pick the tensor to explain, or a callable target= "
            "(output) -> (N,) scores."
        )
    n, k = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if not (is_int(target) or isinstance(target, Tensor)):
        raise TypeError(
            f"target must be None (the predicted class), an int, a LongTensor of shape (N,) or a callable "
            f"(output) -> (N,) scores, got {type(target).__name__}."
        )
    if isinstance(target, int):
        if not 0 <= target < k:
            raise ValueError(f"target={target} is out of range: the model has {k} classes (0 to {k - 1}).")
        return torch.full((n,), target, dtype=torch.long, device=logits.device)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"A target tensor must hold integer class indices, got dtype {target.dtype}.")
    if target.ndim == 0:
        return select_targets(logits, int(target))
    if tuple(target.shape) != (n,):
        raise ValueError(f"A target tensor must have shape (N,) = ({n},), got {tuple(target.shape)}.")
    # A clone outside inference mode: a target made under torch.inference_mode() cannot index for backward.
    target = target.to(device=logits.device, dtype=torch.long).clone()
    if bool(((target < 0) | (target >= k)).any()):
        raise ValueError(f"target holds class indices outside 0 to {k - 1}: {target.tolist()}.")
    return target


def target_scores(logits: Tensor, target: TargetSpec | Target) -> tuple[Tensor, Tensor | None]:
    """Return ``(S, targets)``: the sum over samples of each sample's target score, and the class indices.

    Samples are independent in eval mode, so the gradient of the sum gives each sample's
    own gradient.
    """
    resolved = resolve_target(logits, target)
    return resolved.scores(logits).sum(), resolved.index
