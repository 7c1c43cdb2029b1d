"""encode_png writes PNGs that a real decoder reads back exactly; image_summary reaches TensorBoard."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from lit_helpers import read_tensorboard
from PIL import Image

from lightning_explain.render.png import encode_png, image_summary


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 3), (37, 53, 3), (5, 4), (64, 33)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_random_images_round_trip_exactly(shape, level):
    image = np.random.default_rng(sum(shape) + level).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = decode(encode_png(image, level))
    assert decoded.dtype == np.uint8 and decoded.shape == shape
    assert np.array_equal(decoded, image)


def test_differences_wrap_modulo_256_and_are_exact_at_extremes():
    image = np.zeros((5, 6, 3), dtype=np.uint8)
    image[::2] = 255  # rows 255, 0, 255: differences of -255 and +255 wrap
    image[1, :, 1] = np.arange(6) * 51
    assert np.array_equal(decode(encode_png(image)), image)


def test_non_contiguous_views_are_encoded_as_their_values():
    base = np.random.default_rng(0).integers(0, 256, size=(20, 30, 4), dtype=np.uint8)
    view = base[::2, 3::2, :3]  # strided rows, columns and channels
    assert np.array_equal(decode(encode_png(view)), view)


def test_header_and_chunks_are_well_formed():
    png = encode_png(np.full((10, 20, 3), 7, dtype=np.uint8))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, kinds = 8, []
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind, data = png[position + 4 : position + 8], png[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + data)
        kinds.append(kind)
        if kind == b"IHDR":
            assert struct.unpack(">IIBBBBB", data) == (20, 10, 8, 2, 0, 0, 0)  # width, height, 8-bit RGB
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_flat_synthetic_pictures_compress_well():
    image = np.zeros((300, 600, 3), dtype=np.uint8)
    image[:, 300:] = (200, 40, 10)
    image[100:200] = 255
    assert len(encode_png(image)) < image.nbytes / 100


@pytest.mark.parametrize(
    ("image", "level", "error", "match"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), 1, TypeError, "uint8"),
        ([[0, 1], [2, 3]], 1, TypeError, "numpy uint8 array"),
        (np.zeros((4, 4, 4), dtype=np.uint8), 1, ValueError, r"\(H, W, 3\) or \(H, W\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), 1, ValueError, "non-empty"),
        (np.zeros((4,), dtype=np.uint8), 1, ValueError, "non-empty"),
        (np.zeros((4, 4, 3), dtype=np.uint8), 10, ValueError, "level"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(image, level, error, match):
    with pytest.raises(error, match=match):
        encode_png(image, level)


def test_image_summary_is_read_back_by_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    image = np.random.default_rng(1).integers(0, 256, size=(12, 18, 3), dtype=np.uint8)
    writer = SummaryWriter(str(tmp_path))
    writer._get_file_writer().add_summary(image_summary("maps/grid", encode_png(image), 12, 18), 5)
    writer.close()
    events = read_tensorboard(tmp_path).Images("maps/grid")
    assert [(e.step, e.height, e.width) for e in events] == [(5, 12, 18)]
    assert np.array_equal(decode(events[0].encoded_image_string), image)
