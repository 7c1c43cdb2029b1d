"""Activation maximisation: the input a channel responds to most (Erhan et al. 2009; Olah et al. 2017).

Gradient ascent on the input, from seeded noise, maximises the mean activation of one channel
of a layer, with total-variation and L2 penalties that keep the image smooth and bounded.
Only the input tensor is optimised: the model is run in eval mode and left exactly as found.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_explain.core.gradients import explanation_mode
from lightning_explain.core.layers import resolve_layer
from lightning_explain.core.validation import check_int, check_ints, is_int

MAX_STEPS = 10_000
"""The most optimisation steps :func:`activation_maximization` accepts."""


class _StopForward(Exception):
    """Raised by the capturing hook: nothing after the layer needs to run."""


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, per image: (N, C, H, W) -> (N,)."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def activation_maximization(
    model: nn.Module,
    layer: nn.Module | str,
    channels: Sequence[int] | int,
    *,
    input_shape: Sequence[int],
    steps: int = 64,
    lr: float = 0.05,
    tv_weight: float = 0.05,
    l2_weight: float = 0.01,
    init_scale: float = 0.1,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Inputs that maximise the mean activation of each chosen channel of ``layer``.

    For each channel ``c`` one input ``x`` (batched together) is optimised with Adam for
    ``steps`` steps, maximising ``mean(A[c]) - tv_weight * TV(x) - l2_weight * mean(x^2)``,
    where ``A`` is the layer's output for ``x`` (a channel is ``A[:, c]``: a feature map of a
    conv layer, a unit of a linear layer) and ``TV`` the mean absolute difference between
    neighbouring pixels. The start is Gaussian noise of scale ``init_scale`` drawn from a local
    generator seeded with ``seed``: the global random generators are not used, and the same
    seed gives the same images.

    The model is run in eval mode, gradients are taken with ``torch.autograd.grad`` with respect
    to the input only: parameters, their ``requires_grad`` and ``.grad``, buffers and training
    flags are left exactly as found, and every hook is removed.

    Args:
        model: any module; the forward pass stops after ``layer``.
        layer: a submodule or its dotted name.
        channels: channel indices of the layer's output (dimension 1).
        input_shape: the shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.
        steps: optimisation steps, 1 to :data:`MAX_STEPS`.
        lr: Adam's learning rate.
        tv_weight: weight of the total-variation penalty (only for inputs with 2 spatial dims).
        l2_weight: weight of the L2 penalty.
        init_scale: standard deviation of the starting noise.
        seed: seeds the starting noise.
        device: where to optimise; default: the device of the model's first parameter (or CPU).

    Returns:
        A float32 tensor ``(len(channels), *input_shape)``, detached.

    Example:
        >>> images = activation_maximization(model, "features.2", [0, 5], input_shape=(1, 28, 28))  # doctest: +SKIP
    """
    channels = [channels] if isinstance(channels, int) else list(channels)
    check_ints("channels", channels, low=0, expected="a non-empty list of channel indices >= 0")
    check_int("steps", steps, low=1, high=MAX_STEPS)
    shape = tuple(input_shape)
    if not shape or any(not is_int(s) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be the positive sizes of one input without the batch, got {input_shape!r}.")
    for name, value in (("lr", lr), ("init_scale", init_scale)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}.")
    for name, value in (("tv_weight", tv_weight), ("l2_weight", l2_weight)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}.")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    generator = torch.Generator().manual_seed(seed)
    start = torch.randn((len(channels), *shape), generator=generator) * init_scale
    with explanation_mode(model, device) as handles:  # also lifts an enclosing no_grad / inference_mode
        x = start.to(device=device, dtype=torch.float32).clone().requires_grad_(True)
        index = torch.tensor(channels, device=device)
        optimizer = torch.optim.Adam([x], lr=lr)
        name, module = resolve_layer(model, layer, x.detach())
        captured: list[Tensor] = []

        def hook(module: nn.Module, args: tuple, output: object) -> None:
            captured.append(output)
            raise _StopForward

        handles.append(module.register_forward_hook(hook))
        for _ in range(steps):
            captured.clear()
            objective = _channel_means(model, x.to(dtype), captured, index, name)
            penalty = l2_weight * x.pow(2).flatten(1).mean(1)
            if x.ndim == 4 and tv_weight:
                penalty = penalty + tv_weight * total_variation(x)
            loss = (penalty - objective).sum()
            (grad,) = torch.autograd.grad(loss, [x])
            x.grad = grad
            optimizer.step()
            x.grad = None
    return x.detach()


def _channel_means(model: nn.Module, x: Tensor, captured: list, index: Tensor, name: str) -> Tensor:
    """Sample i's mean activation of channel ``index[i]`` at the layer."""
    try:
        model(x)
    except _StopForward:
        pass
    if not captured:
        raise ValueError(f"Layer {name!r} was not called during the forward pass; choose a layer the forward uses.")
    output = captured[0]
    if not isinstance(output, Tensor) or output.ndim < 2:
        raise ValueError(f"Layer {name!r} must return a tensor (N, C, ...) to maximise a channel of it.")
    if int(index.max()) >= output.shape[1]:
        raise ValueError(f"Layer {name!r} has {output.shape[1]} channels; got channel {int(index.max())}.")
    chosen = output[torch.arange(output.shape[0], device=output.device), index]
    return chosen.float().reshape(output.shape[0], -1).mean(1)
