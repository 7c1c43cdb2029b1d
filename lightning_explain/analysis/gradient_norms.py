"""Per-layer gradient norms without a host synchronisation per parameter.

A "layer" is a module that owns parameters directly (``module.parameters(recurse=False)``).
Norms of all gradients come from one ``torch._foreach_norm`` call and are combined per
layer on the device, so an event costs one transfer of a small vector to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_explain.core.compiled import named_eager_modules
from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.losses import LossFn, mean_loss
from lightning_explain.core.outputs import OutputSpec, select_output


def parameter_owners(model: nn.Module) -> tuple[list[str], dict[nn.Parameter, int]]:
    """The layers that own parameters, and a map from each parameter to its layer's index.

    The root module's own parameters belong to a layer named ``"root"``; a parameter shared
    by several modules belongs to the first of them in ``model.named_modules()`` order. Names are plain,
    without the ``_orig_mod`` segments of compiled modules.
    """
    names: list[str] = []
    owner: dict[nn.Parameter, int] = {}
    for name, module in named_eager_modules(model):
        own = [p for p in module.parameters(recurse=False) if p not in owner]
        if own:
            for parameter in own:
                owner[parameter] = len(names)
            names.append(name or "root")
    return names, owner


def grouped_norms(
    grads: Sequence[Tensor], groups: Sequence[int], num_groups: int, norm_type: float = 2.0
) -> tuple[Tensor, Tensor]:
    """Norms of gradients combined per group: ``(group_norms (num_groups,), total)``, float32.

    The norm of a group is the ``norm_type``-norm of all its gradients concatenated; groups
    with no gradient get 0. Equivalent to ``torch.linalg.vector_norm(torch.cat([g.flatten() ...]))``
    per group, computed with one fused ``_foreach_norm``.
    """
    if not grads:
        raise ValueError("grouped_norms needs at least one gradient.")
    device = grads[0].device
    norms = torch.stack([n.float().to(device) for n in _foreach_norm(list(grads), norm_type)])
    index = torch.tensor(list(groups), device=device)
    if math.isinf(norm_type):
        group_norms = norms.new_zeros(num_groups).scatter_reduce(0, index, norms, reduce="amax")
        return group_norms, norms.max()
    powered = norms.pow(norm_type)
    group_norms = norms.new_zeros(num_groups).index_add(0, index, powered).pow(1 / norm_type)
    return group_norms, powered.sum().pow(1 / norm_type)


def _foreach_norm(tensors: list[Tensor], norm_type: float) -> Sequence[Tensor]:
    try:
        return torch._foreach_norm(tensors, norm_type)
    except (RuntimeError, TypeError):  # e.g. a norm order the fused kernel lacks
        return [torch.linalg.vector_norm(t, norm_type) for t in tensors]


def probe_loss_gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    parameters: Sequence[nn.Parameter],
    loss_fn: LossFn | None = None,
    *,
    output: OutputSpec = None,
) -> list[Tensor | None]:
    """Gradients of the loss on a batch with respect to ``parameters``, without touching ``.grad``.

    Computed in eval mode (no BatchNorm update, no dropout draw); the model is left as found.
    ``loss_fn(logits, targets)`` gives per-sample losses (N,) (cross-entropy by default), whose mean
    is differentiated; a loss already reduced to a 0-d tensor is taken as it is. ``logits`` is the tensor
    ``output=`` picks out of what the model returns (:func:`~lightning_explain.core.outputs.select_output`: by
    default a tensor as is, a dict's or ``ModelOutput``'s ``logits``, a tuple's first element).
    """
    with explanation_mode(model, inputs.device):
        logits = select_output(model(inputs.detach().clone()), output)
        loss = mean_loss(loss_fn, logits, targets)
        grads = torch.autograd.grad(loss, list(parameters), allow_unused=True)
    return [None if g is None else g.detach() for g in grads]


def loss_gradients_for_maps(
    model: nn.Module,
    x: Tensor,
    logits: Tensor,
    loss: Tensor,
    parameters: list,
    keep_graph: bool,
    *,
    output: OutputSpec = None,
) -> tuple[tuple, Tensor, Tensor]:
    """The loss gradients, and ``(x, logits)`` whose graph still holds for the maps' backward (``keep_graph``).

    One backward that keeps the graph; a compiled module whose backward refuses ``retain_graph``
    (``torch.compile``'s donated buffers) gets a second forward pass for the maps instead, whose logits are
    picked out of the model's output by ``output=`` (:func:`~lightning_explain.core.outputs.select_output`).
    """
    try:
        return torch.autograd.grad(loss, parameters, allow_unused=True, retain_graph=keep_graph), x, logits
    except RuntimeError as error:
        if not (keep_graph and "donated buffer" in str(error)):
            raise
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    x = x.detach().requires_grad_(True)
    return grads, x, select_output(model(x), output)
