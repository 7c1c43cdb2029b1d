"""Token saliency: the norm of the target score's gradient at each token's embedding (Li et al., 2016)."""

from __future__ import annotations

from torch import Tensor

from lightning_explain.attribution.registry import MethodContext, MethodSpec, register


def token_saliency_from_pass(context: MethodContext) -> Tensor:
    """``||dS/de_t||_2`` over the embedding dimension, from the plain pass at the embedding layer: (N, T)."""
    return context.plain.activation_grad.float().norm(dim=-1)


SPEC = register(
    MethodSpec(
        name="saliency",
        summary="the L2 norm of the score's gradient at each token's embedding, ||dS/de_t|| (Li et al., 2016)",
        compute=token_saliency_from_pass,
        passes=frozenset({"plain"}),
        input_kind="tokens",
    )
)
