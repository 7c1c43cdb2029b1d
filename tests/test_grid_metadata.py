"""Probe grids carry their cell layout and each sample's outcome inside the PNG (a ``tEXt`` chunk)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lit_helpers import LitCNN, loaders, read_tensorboard, trainer
from PIL import Image

from lightning_explain import ExplainCallback
from lightning_explain.callbacks._log_writer import PNG_METADATA_KEY
from lightning_explain.render.grids import grid_boxes, render_explanation_grid, tile_grid
from lightning_explain.render.png import encode_png, png_text


def test_png_text_round_trips_and_other_readers_see_it():
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    png = encode_png(image, text={"a": "first", "lightning-explain": json.dumps({"x": [1, 2]})})
    assert png_text(png) == {"a": "first", "lightning-explain": '{"x": [1, 2]}'}
    decoded = Image.open(io.BytesIO(png))
    assert decoded.text["a"] == "first"  # Pillow reads the same chunk
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), image)  # pixels unchanged by the text
    assert png_text(encode_png(image)) == {}


def test_png_text_rejects_what_png_cannot_hold():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="Latin-1"):
        encode_png(image, text={"k": "\u2603"})
    with pytest.raises(ValueError, match="1 to 79"):
        encode_png(image, text={"": "value"})
    with pytest.raises(ValueError, match="signature"):
        png_text(b"not a png")


def test_grid_boxes_are_where_tile_grid_puts_each_tile():
    tiles = torch.stack([torch.full((3, 4, 6), i / 10) for i in range(7)])
    grid = tile_grid(tiles, ncols=3, pad=2, pad_value=1.0)
    boxes = grid_boxes(7, 4, 6, ncols=3, pad=2)
    assert len(boxes) == 7
    for i, (x, y, w, h) in enumerate(boxes):
        torch.testing.assert_close(grid[:, y : y + h, x : x + w], tiles[i])
        assert (grid[:, y - 1, x : x + w] == 1.0).all()  # the padding lies just outside the box


def test_render_explanation_grid_returns_each_samples_cell():
    inputs = torch.rand(5, 1, 8, 8)
    maps = torch.rand(5, 8, 8)
    correct = torch.tensor([True, False, True, True, False])
    image, cells = render_explanation_grid(inputs, maps, correct=correct, return_cells=True)
    assert torch.equal(image, render_explanation_grid(inputs, maps, correct=correct))
    assert len(cells) == 5
    for (x, y, w, h), right in zip(cells, correct.tolist(), strict=True):
        assert x + w <= image.shape[1] and y + h <= image.shape[0]
        strip = image[y, x + w // 2].tolist()  # the top row of a cell is its right/wrong strip
        assert (strip[1] > strip[0]) == right  # green when right, red when wrong


def test_a_fit_logs_grids_whose_metadata_matches_the_model(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    csv = CSVLogger(tmp_path, name="csv")
    callback = ExplainCallback(every_n_steps=2, every_n_epochs=None, methods=("saliency", "grad_cam"), probe_size=5)
    model = LitCNN()
    train, val = loaders()
    trainer(tmp_path, [callback], logger=[tensorboard, csv], max_epochs=1).fit(model, train, val)

    events = read_tensorboard(tensorboard.log_dir)
    probe = callback.probe
    with torch.no_grad():
        logits = model.eval()(probe.inputs)
    for method in ("saliency", "grad_cam"):
        images = events.Images(f"explain/{method}")
        assert [e.step for e in images] == [0, 2, 4]
        for event in images:
            meta = json.loads(png_text(event.encoded_image_string)[PNG_METADATA_KEY])
            assert meta["format"] == "lightning-explain/grid" and meta["version"] == 1
            assert (meta["method"], meta["step"], meta["samples"]) == (method, event.step, 5)
            assert (meta["height"], meta["width"]) == (event.height, event.width)
            assert [c["sample"] for c in meta["cells"]] == list(range(5))
            assert meta["target"] == probe.targets.tolist()
            assert meta["correct"] == [p == t for p, t in zip(meta["predicted"], meta["target"], strict=True)]
            assert all(0 < c <= 1 for c in meta["confidence"])
        last = json.loads(png_text(images[-1].encoded_image_string)[PNG_METADATA_KEY])
        assert last["predicted"] == logits.argmax(dim=1).tolist()  # the last event is the trained model's
        np.testing.assert_allclose(last["confidence"], logits.softmax(dim=1).amax(dim=1).numpy(), atol=1e-4)
        file_png = (tmp_path / "csv" / "version_0" / "explain" / method / "step_4.png").read_bytes()
        assert png_text(file_png) == png_text(images[-1].encoded_image_string)  # PNG files carry it too
