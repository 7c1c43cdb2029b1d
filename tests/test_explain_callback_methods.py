"""ExplainCallback with every method name, method options, and the feature-map grid."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, read_tensorboard, trainer
from method_calls import CNN_HEATMAP_METHODS, CNN_METHODS
from PIL import Image

import lightning_explain.callbacks.explain_callback as explain_module
from lightning_explain import ExplainCallback
from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution import explain
from lightning_explain.render.grids import COLORMAPS, render_feature_maps

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")

FAST = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}, "occlusion": {"window": 4}}


def fit(tmp_path, callback, *, logger=None, model=None, **kwargs):
    train_loader, val_loader = loaders()
    model = model or LitCNN()
    run = trainer(tmp_path, [callback], logger=logger, **kwargs)
    run.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return run, model


def test_defaults_are_unchanged():
    callback = ExplainCallback()
    assert callback.methods == ("saliency", "grad_cam")
    assert callback.method_options == {}


def test_every_method_is_logged_to_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(methods=CNN_METHODS, method_options=FAST, probe_size=4)
    fit(tmp_path, callback, logger=logger, max_epochs=1)
    events = read_tensorboard(logger.log_dir)
    for method in CNN_METHODS:
        images = events.Images(f"explain/{method}")
        assert [e.step for e in images] == [0, 4], method
        picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 10, method
    for method in CNN_HEATMAP_METHODS:  # heatmaps have statistics ...
        assert [e.step for e in events.Scalars(f"explain/{method}/mean")] == [0, 4], method
    assert "explain/feature_maps/mean" not in events.Tags()["scalars"]  # ... feature maps do not
    # The grid: a row per probe sample, a tile per channel of the layer ('features': 8 channels, 12 x 12,
    # enlarged 3x to 36 pixels, 1 pixel of padding on each side).
    grid = Image.open(io.BytesIO(events.Images("explain/feature_maps")[-1].encoded_image_string))
    assert (grid.height, grid.width) == (4 * 38, 8 * 38)


def test_method_options_reach_the_methods(tmp_path, monkeypatch):
    captured = {}
    original = explain_module.compute_explanation

    def keep_last(model, inputs, target, layer, methods, **kwargs):
        result = original(model, inputs, target, layer, methods, **kwargs)
        captured.update(model=model, inputs=inputs, target=target, layer=layer, kwargs=kwargs, maps=result.maps)
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", keep_last)
    options = {"integrated_gradients": {"steps": 3, "baseline": 0.5}, "occlusion": {"window": 6, "stride": 3}}
    methods = ("integrated_gradients", "occlusion", "guided_grad_cam")
    fit(tmp_path, ExplainCallback(methods=methods, method_options=options, probe_size=4), max_epochs=1)
    assert captured["kwargs"] == {"options": options, "output": None}
    reference = explain(
        captured["model"], captured["inputs"], captured["target"], captured["layer"], methods, options=options
    )
    default = explain(captured["model"], captured["inputs"], captured["target"], captured["layer"], methods)
    for method in methods:
        torch.testing.assert_close(captured["maps"][method], reference[method])
    assert not torch.allclose(captured["maps"]["occlusion"], default["occlusion"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ("saliency", "lrp")}, "occlusion"),  # lists every valid name
        ({"methods": ("saliency",), "method_options": {"occlusion": {"window": 4}}}, "not in methods"),
        ({"methods": ("smoothgrad",), "method_options": {"smoothgrad": {"sigma": 1}}}, "noise"),
        ({"methods": ("smoothgrad",), "method_options": {"smoothgrad": {"reduce": None}}}, "per-channel"),
        ({"methods": ("occlusion",), "method_options": {"occlusion": {"reduce": "mean"}}}, "max_abs"),
    ],
)
def test_constructor_rejects_bad_methods_and_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExplainCallback(**kwargs)


def test_bad_option_values_stop_fit_before_the_first_step(tmp_path):
    model = LitCNN()
    callback = ExplainCallback(methods=("occlusion",), method_options={"occlusion": {"window": 20}})
    with pytest.raises(MisconfigurationException, match="smaller window"):
        fit(tmp_path, callback, model=model)
    assert model.training_steps == 0


def test_training_is_not_disturbed_by_any_method(tmp_path):
    """SmoothGrad's noise comes from a private generator: same weights as a run without the callback."""

    def run(callbacks):
        seed_everything(7)
        model = LitCNN()
        train_loader, _ = loaders()
        trainer(tmp_path, callbacks, deterministic=True, max_epochs=1, limit_val_batches=0).fit(model, train_loader)
        return model.state_dict()

    plain = run([])
    explained = run([ExplainCallback(methods=CNN_METHODS, method_options=FAST, every_n_steps=2, probe_size=2)])
    for key in plain:
        assert torch.equal(plain[key], explained[key]), key


# --------------------------------------------------------------------------- render_feature_maps


def test_feature_map_grid_layout_and_scale():
    activation = torch.rand(3, 5, 4, 6)
    activation[:, 1] = 0  # a dead channel
    activation[0, 2] *= 10  # one sample much brighter in channel 2
    grid = render_feature_maps(activation, max_channels=4, colormap="gray", min_cell=8)
    assert grid.dtype == torch.uint8
    cell_h, cell_w = 2 * 4 + 2, 2 * 6 + 2  # enlarged 2x, padded 1 pixel each side
    assert grid.shape == (3 * cell_h, 4 * cell_w, 3)

    def cell(row: int, col: int) -> torch.Tensor:
        return grid[row * cell_h + 1 : (row + 1) * cell_h - 1, col * cell_w + 1 : (col + 1) * cell_w - 1].float()

    black = round(255 * COLORMAPS["gray"][0][0])
    assert (cell(0, 1) == black).all() and (cell(2, 1) == black).all()  # dead channel: dark
    assert cell(0, 2).mean() > 3 * cell(1, 2).mean()  # one scale per channel across samples
    assert cell(1, 0).max() > 100 and cell(1, 3).max() > 100  # every live channel is stretched


def test_feature_map_grid_rejects_non_spatial_activations():
    with pytest.raises(ValueError, match="layer="):
        render_feature_maps(torch.rand(2, 8))


def test_feature_map_grid_through_a_recording_logger(tmp_path):
    """Loggers without images still get the heatmap statistics; feature maps add nothing there."""
    logger = RecordingLogger()
    with pytest.warns(UserWarning, match="images"):
        fit(tmp_path, ExplainCallback(methods=("feature_maps", "saliency")), logger=logger, max_epochs=1)
    keys = set().union(*(metrics for _, metrics in logger.metrics))
    assert "explain/saliency/mean" in keys
    assert not any(key.startswith("explain/feature_maps") for key in keys)


def test_grad_cam_on_a_vision_transformers_token_layer(tmp_path):
    """ViT-style models: Grad-CAM at a token layer through method_options' drop_tokens."""
    from toy_models import TinyViT

    class LitViT(LitCNN):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Identity()
            self.vit = TinyViT(classes=3, image=12, patch=4)
            self.head = torch.nn.Identity()

        def forward(self, x):
            return self.vit(x.expand(-1, 3, -1, -1))

    logger = TensorBoardLogger(tmp_path, name="tb")
    tokens = {"drop_tokens": 1}
    callback = ExplainCallback(
        layer="vit.block",
        methods=("grad_cam", "grad_cam_pp"),
        method_options={"grad_cam": tokens, "grad_cam_pp": tokens},
    )
    fit(tmp_path, callback, logger=logger, model=LitViT(), max_epochs=1)
    events = read_tensorboard(logger.log_dir)
    assert [e.step for e in events.Images("explain/grad_cam")] == [0, 4]
    assert [e.step for e in events.Images("explain/grad_cam_pp")] == [0, 4]

    detected = ExplainCallback(layer="vit.block", methods=("grad_cam",))  # without the option: detected
    fit(tmp_path, detected, model=LitViT(), max_epochs=1)
    assert detected.layer_name == "vit.block" and detected.layer_layout.prefix_tokens == 1

    model = LitViT()
    wrong = {"grad_cam": {"drop_tokens": 2}}  # 7 patches cannot form a grid: an error before step 0
    with pytest.raises(MisconfigurationException, match="cannot be decided"):
        fit(tmp_path, ExplainCallback(layer="vit.block", methods=("grad_cam",), method_options=wrong), model=model)
    assert model.training_steps == 0
