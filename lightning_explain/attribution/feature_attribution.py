"""Attribution for non-image inputs: tabular features, sequences, and token layers (ViT-style).

- :func:`feature_saliency`: ``|dS/dx|`` per feature (N, F) or per time step (N, T) / (N, T, D).
- :func:`token_grad_cam`: Grad-CAM at a layer that outputs tokens (N, T, D), the tokens
  reshaped into their grid (N, D, h, w) after dropping leading tokens such as a CLS token.

Both run in eval mode and leave the model exactly as found
(see :func:`lightning_explain.attribution.compute_explanation`).
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_explain.attribution._layer_maps import tokens_to_grid
from lightning_explain.attribution.methods.grad_cam import grad_cam_from_activation
from lightning_explain.core.gradients import check_inputs, gradient_pass
from lightning_explain.core.layers import LayerSpec, resolve_layer
from lightning_explain.core.outputs import OutputSpec
from lightning_explain.core.targets import TargetSpec
from lightning_explain.core.validation import check_int


def check_feature_inputs(inputs: object) -> Tensor:
    """Raise unless ``inputs`` are tabular (N, F) or sequences (N, T) / (N, T, D) of floats."""
    inputs = check_inputs(inputs, need_float=True)
    if inputs.ndim not in (2, 3):
        raise ValueError(
            f"Feature attribution explains tabular inputs (N, F) or sequences (N, T) or (N, T, D); got inputs of "
            f"shape {tuple(inputs.shape)}. For images (N, C, H, W) use saliency or grad_cam."
        )
    return inputs


def feature_saliency_from_gradient(input_grad: Tensor) -> Tensor:
    """``|dS/dx|`` in float32; a trailing feature dimension (N, T, D) is reduced by its maximum -> (N, T).

    The same reduction :func:`~lightning_explain.attribution.saliency` applies over image channels.
    """
    magnitude = input_grad.float().abs()
    return magnitude.amax(dim=2) if magnitude.ndim == 3 else magnitude


def feature_saliency(
    model: nn.Module, inputs: Tensor, target: TargetSpec = None, *, output: OutputSpec = None
) -> Tensor:
    """Saliency of tabular or sequence inputs: how much each feature or time step moves the score.

    Args:
        model: a classifier returning logits (N, K) or scores (N,).
        inputs: a float batch, tabular (N, F), a univariate sequence (N, T), or a multivariate
            sequence (N, T, D).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        output: which tensor of the model's output to explain (see :func:`~lightning_explain.attribution.explain`).

    Returns:
        ``|dS/dx|`` as float32 (N, F) or (N, T); for (N, T, D) the maximum over D, like the
        maximum over channels of image saliency.

    Example:
        >>> scores = feature_saliency(model, table)  # doctest: +SKIP
        >>> top5 = scores.mean(0).topk(5).indices
    """
    inputs = check_feature_inputs(inputs)
    result = gradient_pass(model, inputs, target, input_grad=True, output=output)
    return feature_saliency_from_gradient(result.input_grad)


def token_grad_cam(
    model: nn.Module,
    inputs: Tensor,
    layer: LayerSpec,
    *,
    target: TargetSpec = None,
    grid: tuple[int, int] | None = None,
    drop_tokens: int = 1,
    output: OutputSpec = None,
) -> Tensor:
    """Grad-CAM at a token layer of a transformer (ViT-style), mapped back onto the patch grid.

    The layer's output ``A`` (N, T, D) and its gradient lose their first ``drop_tokens`` tokens
    (1 = a CLS token), are reshaped into the patch grid (N, D, h, w), and go through the standard
    formula ``ReLU(sum_k mean_ij(dS/dA_k) * A_k)``. For image inputs (N, C, H, W) the map is
    upsampled bilinearly to (H, W); for other inputs (token ids, embeddings) it is returned at the
    grid's size (h, w).

    Args:
        model: a classifier returning logits (N, K) or scores (N,).
        inputs: the batch; need not be floating point (token ids work: only the layer is differentiated).
        layer: the token layer: a submodule or its dotted name (e.g. ``"blocks.3"``).
        target: ``None`` = the predicted class, an ``int``, or a LongTensor (N,).
        grid: the patch grid ``(h, w)``; ``None`` = square.
        drop_tokens: how many leading tokens are not patches (CLS, distillation, register tokens).
        output: which tensor of the model's output to explain (see :func:`~lightning_explain.attribution.explain`).

    Returns:
        A float32 tensor (N, H, W) for image inputs, else (N, h, w).

    Example:
        >>> heat = token_grad_cam(vit, images, layer="encoder.layers.11", drop_tokens=1)  # doctest: +SKIP
    """
    inputs = check_inputs(inputs, need_float=False)
    check_int("drop_tokens", drop_tokens, low=0)
    if layer is None:
        raise ValueError("token_grad_cam needs layer=: the token layer to explain (a module or its dotted name).")
    name, module = resolve_layer(model, layer, inputs)
    result = gradient_pass(model, inputs, target, layer=module, layer_name=name, input_grad=False, output=output)
    activation = tokens_to_grid(result.activation, grid, drop_tokens)
    activation_grad = tokens_to_grid(result.activation_grad, grid, drop_tokens)
    size = tuple(inputs.shape[2:]) if inputs.ndim == 4 else tuple(activation.shape[2:])
    return grad_cam_from_activation(activation, activation_grad, size)
