"""Token input × gradient: each token's embedding dotted with the score's gradient there (Denil et al., 2014)."""

from __future__ import annotations

from torch import Tensor

from lightning_explain.attribution.registry import MethodContext, MethodSpec, register


def token_input_x_gradient_from_pass(context: MethodContext) -> Tensor:
    """``sum_d e_td * dS/de_td`` from the plain pass at the embedding layer: (N, T), signed.

    Equal to Captum's ``LayerGradientXActivation(f, embedding).attribute(input_ids, ...).sum(-1)``.
    """
    plain = context.plain
    return (plain.activation.float() * plain.activation_grad.float()).sum(dim=-1)


SPEC = register(
    MethodSpec(
        name="input_x_gradient",
        summary="each token's embedding times the score's gradient, summed over the embedding, e_t . dS/de_t",
        compute=token_input_x_gradient_from_pass,
        passes=frozenset({"plain"}),
        input_kind="tokens",
    )
)
