"""ExplainCallback beyond class logits: regression, multi-label, segmentation and callable targets, and the
explained layer shown to the user (property, info line, TensorBoard text)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import make_images, read_tensorboard, trainer
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback
from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution import compute_explanation, saliency
from lightning_explain.render.grids import OUTLINE_COLOUR
from lightning_explain.render.png import png_text


class HeadModule(LightningModule):
    """A small CNN trained on images with a head and loss given by ``kind``."""

    def __init__(self, kind: str, outputs: int = 3) -> None:
        super().__init__()
        self.kind = kind
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        if kind == "segmentation":
            self.head = nn.Conv2d(6, outputs, 1)
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, outputs))
        self.training_steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out[:, 0] if self.kind == "regression_flat" else out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.training_steps += 1
        x, y = batch
        out = self(x)
        if self.kind.startswith("regression"):
            return F.mse_loss(out.reshape(len(y)), y.float())
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(out, y)
        return F.cross_entropy(out, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def data(kind: str, n: int, seed: int):
    images, labels = make_images(n, seed=seed)
    if kind.startswith("regression"):
        return images, (labels * 2 + 1)  # integer-valued counts, int64
    if kind == "multilabel":
        multi = F.one_hot(labels, 3).float()
        multi[::2, (labels[::2] + 1) % 3] = 1.0  # every other image has two labels
        return images, multi
    if kind == "segmentation":
        return images, (images[:, 0] > 1.0).long() * (1 + labels[:, None, None] % 2)  # bright pixels: class 1 or 2
    return images, labels


def run(tmp_path, kind, callback, *, outputs=3, logger=None, seed=0):
    seed_everything(seed)
    model = HeadModule(kind, 1 if kind.startswith("regression") else outputs)
    train = DataLoader(TensorDataset(*data(kind, 16, 1)), batch_size=8)
    val = DataLoader(TensorDataset(*data(kind, 8, 2)), batch_size=8)
    fit = trainer(tmp_path, [callback] if callback else [], logger=logger, max_epochs=1)
    fit.fit(model, train_dataloaders=train, val_dataloaders=val)
    return model


def grid_metadata(logdir: str, tag: str) -> list[dict]:
    events = read_tensorboard(logdir)
    return [json.loads(png_text(e.encoded_image_string)["lightning-explain"]) for e in events.Images(tag)]


def scalar_tags(logdir: str) -> set[str]:
    return set(read_tensorboard(logdir).Tags()["scalars"])


@pytest.mark.parametrize("kind", ["regression", "regression_flat"])
def test_a_regression_model_is_explained_by_its_output_and_shows_true_and_predicted_values(tmp_path, kind):
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback()
    model = run(tmp_path, kind, callback, logger=logger)
    assert callback.head == "regression"
    samples = grid_metadata(logger.log_dir, "explain/saliency")[-1]
    probe_x, probe_y = data(kind, 8, 2)
    assert samples["target"] == [float(v) for v in probe_y.tolist()]  # the true values beside ...
    predicted = model.eval()(probe_x).reshape(-1)
    np.testing.assert_allclose(samples["predicted"], predicted.tolist(), atol=1e-3)  # ... the predictions
    assert samples["correct"] is None
    assert "explain/probe_accuracy" not in scalar_tags(logger.log_dir)
    assert "explain/grad_cam/concentration" in scalar_tags(logger.log_dir)


def test_regression_refuses_a_class_target_at_fit_start(tmp_path):
    with pytest.raises(MisconfigurationException, match="regression head.*Leave target=None"):
        run(tmp_path, "regression", ExplainCallback(target="label"))


def test_multi_label_explains_each_samples_highest_scoring_positive_label(tmp_path, monkeypatch):
    import lightning_explain.callbacks.explain_callback as explain_module

    seen = []
    original = explain_module.compute_explanation

    def spy(model, inputs, target, layer, methods, **kwargs):
        result = original(model, inputs, target, layer, methods, **kwargs)
        seen.append((result.logits, result.targets))
        return result

    monkeypatch.setattr(explain_module, "compute_explanation", spy)
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback()
    run(tmp_path, "multilabel", callback, logger=logger)
    assert callback.head == "multilabel"
    _, labels = data("multilabel", 8, 2)
    logits, explained = seen[-1]
    best_positive = logits.masked_fill(labels == 0, float("-inf")).argmax(dim=1)
    assert explained.tolist() == best_positive.tolist()
    samples = grid_metadata(logger.log_dir, "explain/grad_cam")[-1]
    hits = (logits.gather(1, explained[:, None])[:, 0].sigmoid() >= 0.5).tolist()
    assert samples["correct"] == hits and samples["explained"] == explained.tolist()
    accuracy = read_tensorboard(logger.log_dir).Scalars("explain/probe_accuracy")[-1].value
    assert accuracy == pytest.approx(float(np.mean(hits)))


def test_segmentation_explains_a_class_over_its_predicted_pixels_and_outlines_the_mask(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(target=1, methods=("saliency", "grad_cam"))
    model = run(tmp_path, "segmentation", callback, logger=logger)
    assert callback.head == "segmentation" and callback.layer_name == "features"
    probe_x, _ = data("segmentation", 8, 2)
    model.eval()
    expected = compute_explanation(model, probe_x, 1, None, ("saliency",))
    logits = model(probe_x)
    mask = logits.argmax(dim=1) == 1
    x = probe_x.clone().requires_grad_(True)
    (model(x)[:, 1] * mask).sum().backward()
    torch.testing.assert_close(expected.maps["saliency"], x.grad.abs().amax(dim=1))
    events = read_tensorboard(logger.log_dir)
    image = np.asarray(Image.open(io.BytesIO(events.Images("explain/saliency")[-1].encoded_image_string)))
    cyan = np.all(image == np.array(OUTLINE_COLOUR) * 255, axis=-1)
    assert cyan.sum() > 0 if bool(mask.any()) else cyan.sum() == 0
    samples = grid_metadata(logger.log_dir, "explain/saliency")[-1]
    assert samples["explained"] == [1] * 8
    np.testing.assert_allclose(samples["area"], mask.flatten(1).float().mean(1).tolist(), atol=1e-3)


def test_a_callable_target_gets_the_output_and_the_probe_targets(tmp_path, monkeypatch):
    calls = []

    def margin(output, targets):
        calls.append(targets)
        return output[:, 0] - output[:, 1]

    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(target=margin, methods=("saliency",))
    model = run(tmp_path, "classification", callback, logger=logger)
    assert callback.head == "custom"
    probe_x, probe_y = data("classification", 8, 2)
    assert all(torch.equal(t, probe_y) for t in calls)
    model.eval()
    expected = saliency(model, probe_x, target=lambda out: out[:, 0] - out[:, 1])
    torch.testing.assert_close(
        compute_explanation(model, probe_x, lambda o: margin(o, probe_y)).maps["saliency"], expected
    )


@pytest.mark.parametrize("kind", ["regression", "multilabel", "segmentation"])
def test_training_is_bit_identical_with_and_without_the_callback_on_every_head(tmp_path, kind):
    plain = run(tmp_path / "a", kind, None)
    explained = run(tmp_path / "b", kind, ExplainCallback(every_n_steps=1, methods=("saliency", "grad_cam")))
    for (name, a), b in zip(plain.state_dict().items(), explained.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_explained_layer_is_logged_as_text_and_in_the_info_line(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback()
    with caplog.at_level(logging.INFO):
        run(tmp_path, "classification", callback, logger=logger)
    assert callback.layer_name == "features" and callback.layer_layout.kind == "nchw"
    assert any("layer 'features'" in r.getMessage() and "ExplainCallback" in r.getMessage() for r in caplog.records)
    accumulator = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    accumulator.Reload()
    texts = accumulator.Tensors("explain/layer/text_summary")
    assert len(texts) == 1  # logged once
    text = texts[0].tensor_proto.string_val[0].decode()
    assert "`features`" in text and "feature map" in text


def test_feature_maps_of_a_token_layer_are_drawn_as_the_patch_grids_channels(tmp_path):
    from toy_models import TinyViT

    class LitViT(HeadModule):
        def __init__(self):
            super().__init__("classification")
            self.vit = TinyViT(classes=3, image=12, patch=4)

        def forward(self, x):
            return self.vit(x.expand(-1, 3, -1, -1))

    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(layer="vit.block", methods=("feature_maps",))
    seed_everything(0)
    train = DataLoader(TensorDataset(*data("classification", 16, 1)), batch_size=8)
    trainer(tmp_path, [callback], logger=logger, max_epochs=1).fit(LitViT(), train_dataloaders=train)
    assert callback.layer_layout.kind == "tokens" and callback.layer_layout.grid == (3, 3)
    assert len(read_tensorboard(logger.log_dir).Images("explain/feature_maps")) == 2


def test_a_segment_predicted_nowhere_gets_a_one_time_warning(tmp_path):
    """Class 3 never appears in the labels (0 to 2), so training pushes it off every pixel."""
    with pytest.warns(UserWarning, match="predicted on no pixel.*AREA 0%"):
        run(tmp_path, "segmentation", ExplainCallback(target=3, every_n_steps=1, methods=("saliency",)), outputs=4)
