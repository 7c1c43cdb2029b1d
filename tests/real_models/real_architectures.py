"""Real architectures, built small and randomly initialised, and the reference Grad-CAMs they are checked against.

Shared by the tests in this folder and by ``which_models.py`` (the README's "Which models" table). Nothing here
downloads weights: every model comes from a constructor with ``pretrained=False`` / ``weights=None`` or from a
small config, with sizes chosen so that one forward and backward pass takes milliseconds on a CPU.

Each :class:`Case` names the layer the zero-config Grad-CAM is expected to pick (the layer pytorch-grad-cam's
documentation gives for that family), the layout that layer's output is read in, and how many prefix tokens
(CLS, distillation, registers) come before the patch tokens.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLASSES = 5
SEED = 0


def need(module: str):
    """Import ``module``; under pytest a missing one skips the calling test (``pytest.importorskip``)."""
    if "pytest" in sys.modules:
        return sys.modules["pytest"].importorskip(module)
    return importlib.import_module(module)


# --------------------------------------------------------------------------------------------- the builders
def timm_vit(**extra) -> nn.Module:
    return need("timm").create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=CLASSES,
        img_size=extra.pop("img_size", 32),
        patch_size=8,
        depth=2,
        embed_dim=64,
        num_heads=2,
        **extra,
    )


def timm_deit_distilled() -> nn.Module:
    return need("timm").create_model(
        "deit_tiny_distilled_patch16_224",
        pretrained=False,
        num_classes=CLASSES,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=64,
        num_heads=2,
    )


def timm_swin() -> nn.Module:
    return need("timm").create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=CLASSES,
        img_size=64,
        patch_size=2,
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 2, 2),
        window_size=4,
    )


def torchvision_vit() -> nn.Module:
    models = need("torchvision.models")
    model = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=CLASSES
    )
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zeros the head: no gradient, flat maps
    return model


def torchvision_swin() -> nn.Module:
    models = need("torchvision.models")
    return models.SwinTransformer(
        patch_size=[2, 2],
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=[4, 4],
        num_classes=CLASSES,
    )


def hf_vit() -> nn.Module:
    transformers = need("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=CLASSES,
    )
    return transformers.ViTForImageClassification(config)


def torchvision_cnn(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return getattr(need("torchvision.models"), name)(weights=None, num_classes=CLASSES)

    return build


def timm_cnn(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return need("timm").create_model(name, pretrained=False, num_classes=CLASSES)

    return build


def hf_last_norm(model: nn.Module) -> str:
    """``layernorm_before`` of the last ViT layer, under the name this transformers version gives it.

    transformers 4.x nests the layers as ``vit.encoder.layer``; 5.x (here 5.24) as ``vit.layers``.
    """
    names = dict(model.named_modules())
    for stack in ("vit.encoder.layer", "vit.layers"):
        if stack in names:
            return f"{stack}.{len(names[stack]) - 1}.layernorm_before"
    raise AssertionError("no ViT layer stack found in the Hugging Face model")


# ------------------------------------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Case:
    """One architecture: how to build it, its input, and what zero-config Grad-CAM should find in it."""

    id: str
    family: str
    build: Callable[[], nn.Module]
    shape: tuple[int, int, int, int]
    layer: str | Callable[[nn.Module], str]  # the documented layer (a function where the name depends on versions)
    kind: str  # "tokens", "nhwc" or "nchw"
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None  # the patch grid, for token layouts
    returns_output: bool = False  # a Hugging Face ModelOutput rather than a logits tensor

    def model(self) -> nn.Module:
        torch.manual_seed(SEED)
        return self.build().eval()

    def inputs(self) -> Tensor:
        return torch.randn(self.shape, generator=torch.Generator().manual_seed(SEED + 1))

    def targets(self, model: nn.Module, x: Tensor) -> Tensor:
        """The predicted classes, as explicit integers given to every implementation alike.

        With random weights a fixed class is often one with no positive evidence anywhere: its Grad-CAM is all
        zero after the ReLU and there is nothing to correlate. The predicted class has some.
        """
        with torch.no_grad():
            output = model(x)
        return getattr(output, "logits", output).argmax(dim=1)

    def prepared(self, model: nn.Module | None = None) -> tuple[nn.Module, Tensor, Tensor]:
        """``(model, inputs, targets)``: a fresh model in eval mode unless one is given."""
        model = self.model() if model is None else model
        x = self.inputs()
        return model, x, self.targets(model, x)

    def layer_name(self, model: nn.Module) -> str:
        return self.layer if isinstance(self.layer, str) else self.layer(model)


TRANSFORMERS = [
    Case("timm-vit", "timm ViT (CLS)", timm_vit, (2, 3, 32, 32), "blocks.1.norm1", "tokens", 1, (4, 4)),
    Case(
        "timm-vit-nonsquare",
        "timm ViT (CLS), 32x48 input",
        lambda: timm_vit(img_size=(32, 48)),
        (2, 3, 32, 48),
        "blocks.1.norm1",
        "tokens",
        1,
        (4, 6),
    ),
    Case(
        "timm-deit-distilled",
        "timm DeiT distilled (CLS + dist)",
        timm_deit_distilled,
        (2, 3, 32, 32),
        "blocks.1.norm1",
        "tokens",
        2,
        (4, 4),
    ),
    Case(
        "timm-vit-registers",
        "timm ViT with 4 registers (CLS + 4 reg)",
        lambda: timm_vit(reg_tokens=4),
        (2, 3, 32, 32),
        "blocks.1.norm1",
        "tokens",
        5,
        (4, 4),
    ),
    Case("timm-swin", "timm Swin", timm_swin, (2, 3, 64, 64), "layers.3.blocks.0.norm1", "nhwc"),
    Case(
        "torchvision-vit",
        "torchvision ViT (vit_b_16 family)",
        torchvision_vit,
        (2, 3, 32, 32),
        "encoder.layers.encoder_layer_1.ln_1",
        "tokens",
        1,
        (4, 4),
    ),
    Case(
        "torchvision-swin",
        "torchvision Swin (swin_t family)",
        torchvision_swin,
        (2, 3, 64, 64),
        "features.7.0.norm1",
        "nhwc",
    ),
    Case(
        "hf-vit",
        "Hugging Face ViTForImageClassification",
        hf_vit,
        (2, 3, 32, 32),
        hf_last_norm,
        "tokens",
        1,
        (4, 4),
        returns_output=True,
    ),
]
"""ViT-style and Swin models: the layer is the last block's pre-attention norm (pytorch-grad-cam's documented
target layer for each), read as tokens (prefix dropped, grid restored) or as NHWC."""

CNNS = [
    Case(
        "torchvision-resnet18", "torchvision ResNet-18", torchvision_cnn("resnet18"), (2, 3, 64, 64), "layer4", "nchw"
    ),
    Case(
        "torchvision-mobilenet_v3_small",
        "torchvision MobileNetV3-S",
        torchvision_cnn("mobilenet_v3_small"),
        (2, 3, 64, 64),
        "features",
        "nchw",
    ),
    Case(
        "torchvision-efficientnet_b0",
        "torchvision EfficientNet-B0",
        torchvision_cnn("efficientnet_b0"),
        (2, 3, 64, 64),
        "features",
        "nchw",
    ),
    Case(
        "torchvision-convnext_tiny",
        "torchvision ConvNeXt-T",
        torchvision_cnn("convnext_tiny"),
        (2, 3, 64, 64),
        "features",
        "nchw",
    ),
    Case("timm-seresnet18", "timm SE-ResNet-18", timm_cnn("seresnet18"), (2, 3, 64, 64), "layer4", "nchw"),
    Case("timm-regnety_002", "timm RegNetY-200MF", timm_cnn("regnety_002"), (2, 3, 64, 64), "final_conv", "nchw"),
    Case("timm-convnext_atto", "timm ConvNeXt-atto", timm_cnn("convnext_atto"), (2, 3, 64, 64), "norm_pre", "nchw"),
]
"""CNNs: the last spatial NCHW layer, unchanged by the transformer support. DenseNet is separate (DENSENET)."""

DENSENET = Case(
    "torchvision-densenet121",
    "torchvision DenseNet-121",
    torchvision_cnn("densenet121"),
    (4, 3, 64, 64),
    "features",
    "nchw",
)
"""``features`` is followed by ``F.relu(features, inplace=True)`` in DenseNet's forward: a known defect of
pytorch-grad-cam, whose recorded activation is a view the ReLU then overwrites."""


# -------------------------------------------------------------------------------------------- the references
class Logits(nn.Module):
    """A Hugging Face classifier as pytorch-grad-cam needs it: ``forward(x)`` returns the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=x).logits


def reshape_transform(case: Case) -> Callable[[Tensor], Tensor] | None:
    """pytorch-grad-cam's ``reshape_transform`` for the case's layout: tokens -> drop prefix, grid, NCHW."""
    if case.kind == "tokens":
        prefix, (h, w) = case.prefix_tokens, case.grid

        def tokens(t: Tensor) -> Tensor:
            return t[:, prefix:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

        return tokens
    if case.kind == "nhwc":
        return lambda t: t.permute(0, 3, 1, 2)
    return None


def pytorch_grad_cam_maps(case: Case, model: nn.Module, x: Tensor, targets: Tensor, method: str) -> np.ndarray:
    """pytorch-grad-cam's GradCAM / GradCAMPlusPlus at the case's documented layer: (N, H, W), min-max per image."""
    pgc = need("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"grad_cam": pgc.GradCAM, "grad_cam_pp": pgc.GradCAMPlusPlus}[method]
    layer = model.get_submodule(case.layer_name(model))
    wrapped = Logits(model) if case.returns_output else model
    with cls(model=wrapped, target_layers=[layer], reshape_transform=reshape_transform(case)) as cam:
        maps = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in targets])
    model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float64)


def captum_maps(model: nn.Module, layer_name: str, x: Tensor, targets: Tensor) -> Tensor:
    """Captum's LayerGradCam (ReLU on) at ``layer_name``, upsampled bilinearly to the input: (N, H, W)."""
    need("captum")
    from captum.attr import LayerGradCam

    attribution = LayerGradCam(model, model.get_submodule(layer_name)).attribute(
        x.clone(), target=targets, relu_attributions=True
    )
    model.zero_grad(set_to_none=True)
    return F.interpolate(attribution.detach(), size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def by_hand_cam(
    model: nn.Module,
    layer_name: str,
    x: Tensor,
    targets: Tensor,
    as_map: Callable[[Tensor], Tensor] | None = None,
    seen: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Grad-CAM written out with autograd: the reference where no library applies, or to pin a library's defect.

    ``as_map`` turns the layer's output into (N, C, h, w) (a token or NHWC layer); ``seen`` replaces the
    activation the weights multiply (e.g. ``relu`` for what pytorch-grad-cam reads after an in-place ReLU); the
    gradient is always the one at the layer's output. A model returning a ModelOutput is read through ``.logits``.
    """
    kept: dict[str, Tensor] = {}

    def keep(module: nn.Module, args: object, out: Tensor) -> Tensor:
        kept["out"] = out
        return out * 1  # the model goes on with a copy: an in-place op downstream cannot touch ``out``

    handle = model.get_submodule(layer_name).register_forward_hook(keep)
    try:
        output = model(x.clone())
    finally:
        handle.remove()
    logits = output.logits if hasattr(output, "logits") else output
    (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), kept["out"])
    activation = kept["out"].detach()
    if as_map is not None:
        activation, gradient = as_map(activation), as_map(gradient)
    if seen is not None:
        activation = seen(activation)
    cam = (gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True).relu()
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


# --------------------------------------------------------------------------------------------- the agreement
def min_max(maps) -> np.ndarray:
    """Each image's map scaled to [0, 1] (pytorch-grad-cam's own normalisation)."""
    maps = np.asarray(maps.detach() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low + 1e-12)


def pearson(ours, reference) -> float:
    """The smallest per-image Pearson r between two batches of maps (N, H, W), after per-image min-max.

    An image whose map is flat on both sides (all zero after the ReLU: with random weights the class has no
    positive evidence there) agrees trivially and is left out; flat on one side only is a disagreement, and a
    batch with nothing but flat maps is an error: a comparison of nothing cannot pass.
    """
    ours, reference = min_max(ours), min_max(reference)
    values = []
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        if a.std() == 0 and b.std() == 0:
            continue
        if a.std() == 0 or b.std() == 0:
            raise AssertionError(
                f"image {i}: a flat map on one side only (std ours {a.std():.3g}, reference {b.std():.3g})"
            )
        values.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    if not values:
        raise AssertionError("every map is flat on both sides: nothing to compare")
    return min(values)
