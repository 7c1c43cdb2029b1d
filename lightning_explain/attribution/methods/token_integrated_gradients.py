"""Integrated gradients at a text model's embedding layer (Sundararajan et al., 2017), batched across steps."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_explain.attribution._multipass import DEFAULT_CHUNK_SIZE, check_chunk_size, copies_per_chunk
from lightning_explain.attribution.methods.integrated_gradients import integration_points
from lightning_explain.attribution.registry import MethodContext, MethodSpec, register
from lightning_explain.core.gradients import gradient_pass
from lightning_explain.core.recording import record_outputs
from lightning_explain.core.tokens import check_embedding_output, padding_token
from lightning_explain.core.validation import check_int


def token_integrated_gradients_from_targets(
    context: MethodContext, baseline_token_id: int | None, steps: int, method: str, chunk_size: int
) -> Tensor:
    """``sum_d (e - e_b) * integral_0^1 dS/de(e_b + a (e - e_b)) da`` per token, (N, T).

    ``e`` and ``e_b`` are the embedding layer's outputs for the ids and for the baseline ids (every token
    ``baseline_token_id``), taken in one forward pass of both; the path's points replace the layer's output in
    ``steps`` batched passes. Equal to Captum's ``LayerIntegratedGradients(f, embedding).attribute(input_ids,
    baselines=..., n_steps=steps, method=method).sum(-1)``.
    """
    model, batch, target, layer = context.model, context.tokens, context.target, context.layer
    name = context.layer_name or ""
    alphas, weights = integration_points(steps, method)
    ids = batch.input_ids
    baseline_ids = batch.baseline_ids(padding_token(model, layer, baseline_token_id, "integrated_gradients"))
    both = batch.repeat(2)
    _, recorded = record_outputs(model, torch.cat([ids, baseline_ids]), {name: layer}, forward=both)
    if len(recorded[name]) != 1:
        raise ValueError(
            f"The embedding layer {name!r} ran {len(recorded[name])} times in one forward pass; pass embedding= a "
            "layer that runs once."
        )
    n = ids.shape[0]
    with torch.inference_mode(False), torch.no_grad():  # the path's points must be usable by the gradient passes
        outputs = check_embedding_output(recorded[name][0].clone(), both, name)
        embedded, baseline = outputs[:n], outputs[n:]
        delta = embedded - baseline
        accumulator = torch.zeros_like(embedded, dtype=torch.promote_types(embedded.dtype, torch.float32))
        per_chunk = copies_per_chunk(n, chunk_size)
        for first in range(0, steps, per_chunk):
            alpha = embedded.new_tensor(alphas[first : first + per_chunk]).view(-1, 1, 1, 1)
            weight = accumulator.new_tensor(weights[first : first + per_chunk]).view(-1, 1, 1, 1)
            copies = alpha.shape[0]
            points = (baseline + alpha * delta).reshape(copies * n, *embedded.shape[1:])
            stacked = batch.repeat(copies)
            grad = gradient_pass(
                model,
                stacked.input_ids,
                target.repeat(copies),
                layer=layer,
                layer_name=name,
                input_grad=False,
                forward=stacked,
                layer_value=points,
            ).activation_grad
            accumulator += (weight * grad.view(copies, *embedded.shape)).sum(dim=0)
        return (delta.float() * accumulator).sum(dim=-1)


def _check_options(baseline_token_id: object, steps: object, method: object, chunk_size: object) -> None:
    check_int("baseline_token_id", baseline_token_id, low=0, none_ok=True, expected="a token id >= 0")
    check_chunk_size(chunk_size)
    integration_points(steps, method)


SPEC = register(
    MethodSpec(
        name="integrated_gradients",
        summary="(e - e_baseline) times the gradient integrated from padding tokens to the text, at the embedding",
        compute=token_integrated_gradients_from_targets,
        input_kind="tokens",
        defaults={"baseline_token_id": None, "steps": 32, "method": "gausslegendre", "chunk_size": DEFAULT_CHUNK_SIZE},
        check=_check_options,
    )
)
