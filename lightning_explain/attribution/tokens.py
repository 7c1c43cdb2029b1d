"""The engine's token input kind: attributions of a text model's tokens, taken at its embedding layer.

Token ids are integers, so the methods registered with ``input_kind="tokens"`` read the output ``e`` (N, T, D) of
the embedding layer that consumes ``input_ids`` and its gradient, and give one value per token (N, T). As for
images, the engine runs the shared plain pass once (one forward, one backward, to the embedding's output) for every
method that reads it (``saliency``, ``input_x_gradient``), resolves the target once for all of them, lets the
methods with passes of their own (``integrated_gradients``) run them for that target, and sets the padding
(``attention_mask`` 0) to exactly 0.

Targets: a classifier's class (``None`` = the predicted class, an ``int``, a LongTensor (N,) or a callable, as
everywhere); for a causal language model (logits (N, T, V)) the token after each prompt's last real token
(``None`` = the predicted next token, an ``int`` token id or a LongTensor (N,)), or a
:class:`~lightning_explain.core.tokens.Continuation` of several tokens (their summed log-probabilities).

Example:
    >>> maps = token_attribution(bert, batch["input_ids"], attention_mask=batch["attention_mask"])  # doctest: +SKIP
    >>> maps.shape  # one value per token, 0 on padding  # doctest: +SKIP
    torch.Size([8, 64])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from lightning_explain.attribution.engine import Explanation, check_methods, check_options
from lightning_explain.attribution.registry import MethodContext, get_spec, method_names
from lightning_explain.core.gradients import gradient_pass
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import check_logits, record_outputs
from lightning_explain.core.targets import Target, TargetSpec, TokenTarget, resolve_target
from lightning_explain.core.tokens import Continuation, TokenBatch, check_embedding_output, resolve_embedding

TOKEN_GRADIENT_METHODS = ("input_x_gradient", "saliency")
"""The token methods that share one forward and one backward pass."""


def token_methods() -> tuple[str, ...]:
    """The names the token methods are registered under (``method=`` of :func:`token_attribution`)."""
    return method_names("tokens")


def compute_token_explanation(
    model: nn.Module,
    input_ids: Tensor,
    target: TargetSpec | Continuation = None,
    embedding: LayerSpec = None,
    methods: Sequence[str] = TOKEN_GRADIENT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    attention_mask: Tensor | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    output: OutputSpec = None,
    batch: TokenBatch | None = None,
) -> Explanation:
    """Several token methods for one batch of texts, sharing the plain pass; with the logits and the target.

    Arguments as in :func:`token_attribution` (``methods`` and ``options`` as in
    :func:`~lightning_explain.attribution.explain`); ``batch`` replaces ``input_ids``, ``attention_mask`` and
    ``forward_kwargs`` with a ready :class:`~lightning_explain.core.tokens.TokenBatch` (the callbacks pass one).

    Returns:
        An :class:`~lightning_explain.attribution.Explanation` whose ``maps`` are float32 (N, T), 0 on padding,
        ``layer_name`` the embedding layer, ``targets`` the explained class or token per sample (``None`` for a
        callable target), and ``target`` the resolved target (for a causal LM its ``position``).
    """
    output = check_output_spec(output)
    methods = check_methods(methods, "tokens")
    options = check_options(options, methods, "tokens")
    specs = [get_spec(m, "tokens") for m in methods]
    if batch is None:
        batch = TokenBatch(input_ids, attention_mask, dict(forward_kwargs or {}))
    prompt, prompt_positions = batch, None
    name, module = resolve_embedding(model, embedding, batch)
    if isinstance(target, Continuation):
        batch, continuation, prompt_positions = target.extend(batch)
        target = replace(continuation, output=output)
    elif not isinstance(target, Target):
        target = TokenTarget(batch.last_positions(), target)
    plain = None
    if any("plain" in spec.passes for spec in specs):
        plain = gradient_pass(
            model,
            batch.input_ids,
            target,
            layer=module,
            layer_name=name,
            input_grad=False,
            output=output,
            forward=batch,
        )
        check_embedding_output(plain.activation, batch, name)
        logits, resolved = plain.logits, plain.target
    else:  # only methods with their own passes: fix the target first
        raw, _ = record_outputs(model, batch.input_ids, {}, forward=batch)
        logits = check_logits(raw, output).detach()
        resolved = resolve_target(logits, target, output)
    context = MethodContext(
        model=model,
        inputs=batch.input_ids,
        target=resolved,
        logits=logits,
        layer_name=name,
        plain=plain,
        layer=module,
        tokens=batch,
    )
    real = batch.real
    maps: dict[str, Tensor] = {}
    for spec in specs:
        values = spec.compute(context, **{**spec.defaults, **options.get(spec.name, {})}).float() * real
        maps[spec.name] = values if prompt_positions is None else values.gather(1, prompt_positions) * prompt.real
    return Explanation(maps=maps, logits=logits, targets=resolved.index, layer_name=name, target=resolved)


def token_attribution(
    model: nn.Module,
    input_ids: Tensor,
    target: TargetSpec | Continuation = None,
    *,
    method: str = "input_x_gradient",
    embedding: LayerSpec = None,
    attention_mask: Tensor | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    baseline_token_id: int | None = None,
    steps: int = 32,
    output: OutputSpec = None,
) -> Tensor:
    """How much each token of each text moves the model's score, taken at the embedding layer: float32 (N, T).

    With ``e`` (N, T, D) the output of the embedding layer for ``input_ids`` and ``S`` the target's score:

    - ``"saliency"``: ``||dS/de_t||_2`` over the embedding dimension (unsigned);
    - ``"input_x_gradient"``: ``sum_d e_td dS/de_td``, equal to Captum's
      ``LayerGradientXActivation(f, embedding).attribute(input_ids, ...).sum(-1)`` (signed);
    - ``"integrated_gradients"``: equal to Captum's ``LayerIntegratedGradients(f, embedding).attribute(input_ids,
      baselines=b, n_steps=steps).sum(-1)``, ``b`` every token the padding token (or ``baseline_token_id``); the
      ``steps`` points run batched (signed; the values sum to ``S(x) - S(b)`` up to the quadrature error).

    Padding positions (``attention_mask`` 0) get exactly 0. The model is left exactly as found (modes, weights,
    ``.grad``, hooks, random streams), as by every method.

    Args:
        model: a text model: a classifier (logits (N, K), a dict or ``ModelOutput`` with ``logits``, a regression
            output) or a causal language model (logits (N, T, V)).
        input_ids: integer token ids (N, T).
        target: a classifier: ``None`` = the predicted class, an ``int``, a LongTensor (N,) or a callable
            ``(output) -> (N,)``. A causal language model: the token after each prompt's last real token, ``None`` =
            the predicted one, an ``int`` token id or a LongTensor (N,); or
            :class:`~lightning_explain.core.tokens.Continuation` (ids) for the log-probability of several tokens.
        method: one of :func:`token_methods`: ``"input_x_gradient"`` (the default), ``"saliency"`` or
            ``"integrated_gradients"``.
        embedding: the embedding layer (a module or its dotted name); ``None`` = ``get_input_embeddings()`` of the
            model or a submodule, else the ``nn.Embedding`` that reads ``input_ids``.
        attention_mask: (N, T), 0 on padding; passed to ``forward`` as ``attention_mask=``.
        forward_kwargs: further keyword arguments of ``forward`` (``token_type_ids``, ...).
        baseline_token_id: ``integrated_gradients``' baseline token; ``None`` = the model's ``config.pad_token_id``,
            else its embedding's ``padding_idx``.
        steps: ``integrated_gradients``' points on the path (Gauss-Legendre, Captum's default rule).
        output: which tensor of the model's output to explain (see :func:`~lightning_explain.attribution.explain`).

    Returns:
        float32 (N, T) on the ids' device.

    Example:
        >>> ids, mask = batch["input_ids"], batch["attention_mask"]  # doctest: +SKIP
        >>> maps = token_attribution(model, ids, attention_mask=mask)  # doctest: +SKIP
        >>> top = maps.abs().argmax(dim=1)  # the token each text leans on most  # doctest: +SKIP
    """
    options = {"baseline_token_id": baseline_token_id, "steps": steps} if method == "integrated_gradients" else {}
    explanation = compute_token_explanation(
        model,
        input_ids,
        target,
        embedding,
        (method,),
        options={method: options} if options else None,
        attention_mask=attention_mask,
        forward_kwargs=forward_kwargs,
        output=output,
    )
    return explanation.maps[method]
