"""The guided shared pass: one forward and one backward pass with every ``nn.ReLU`` passing only positive gradients.

The plain shared pass is :func:`lightning_explain.core.gradients.gradient_pass`; this module adds the guided
one (Springenberg et al., 2015) that ``guided_backprop`` and ``guided_grad_cam`` read, without replacing or
changing the user's modules.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from torch import Tensor, autograd, nn

from lightning_explain.core.gradients import GradientPass, gradient_pass
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec


class _PositiveGradient(autograd.Function):
    """Identity forward (a copy); backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx, output: Tensor) -> Tensor:  # noqa: D102
        return output.clone()  # a copy, so in-place ops that follow cannot touch a custom Function's output

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad.clamp(min=0)


def _guide(module: nn.Module, args: tuple, output: object) -> object:
    return _PositiveGradient.apply(output) if isinstance(output, Tensor) else output


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Make every ``nn.ReLU`` module pass only positive gradients back; yields how many were found.

    A forward hook sends each ReLU module's output through an identity whose backward clamps
    the gradient at zero; the ReLU's own backward then applies its mask ``x > 0``. The result,
    ``relu(grad_out) * (x > 0)``, equals clamping the ReLU's ``grad_input`` (Captum's rule),
    also for ``ReLU(inplace=True)``: the modules themselves, including ``inplace``, are not
    changed. The hooks are removed on exit, also after an exception.
    """
    relus = [module for module in model.modules() if isinstance(module, nn.ReLU)]
    handles = []
    try:
        handles = [module.register_forward_hook(_guide) for module in relus]
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()


def guided_gradient_pass(
    model: nn.Module, inputs: Tensor, target: TargetSpec = None, *, output: OutputSpec = None
) -> GradientPass:
    """One forward and one backward pass with guided ReLUs; ``input_grad`` is the guided gradient."""
    with guided_relus(model) as count:
        if count == 0:
            warnings.warn(
                f"Guided backprop found no nn.ReLU module in {type(model).__name__}, so its result is the plain "
                "input gradient. Functional ReLUs (F.relu, torch.relu) cannot be hooked: use nn.ReLU modules.",
                UserWarning,
                stacklevel=3,
            )
        return gradient_pass(model, inputs, target, output=output)
