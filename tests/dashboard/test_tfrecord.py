"""The fast event-file reader: the same records as TensorBoard's, partial writes, damaged files."""

from __future__ import annotations

import random
import struct

import pytest
from dashboard_runs import FIT_RUN
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_crc
from torch.utils.tensorboard import SummaryWriter

from lightning_explain._tfrecord import RecordTail, frame_record, masked_crc32c
from lightning_explain.cli._runs import find_runs, read_run


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


@pytest.mark.parametrize("data", [b"", b"a", struct.pack("<Q", 12345), bytes(range(256)) * 3])
def test_masked_crc32c_is_tensorboards(data):
    assert masked_crc32c(data) == tensorboard_crc(data)


@pytest.mark.parametrize("length", [511, 512, 513, 4096, 4097, 65 * 64 + 3, 100_003])
def test_the_vectorised_crc_of_long_records_is_tensorboards(length):
    data = random.Random(length).randbytes(length)  # lengths around the lane size, the cut-over and powers of two
    assert masked_crc32c(data) == tensorboard_crc(data)
    assert masked_crc32c(bytes(length)) == tensorboard_crc(bytes(length))


def test_frame_record_is_what_tensorboards_record_writer_writes():
    import io

    from tensorboard.summary.writer.record_writer import RecordWriter

    data = random.Random(0).randbytes(3000)
    buffer = io.BytesIO()
    RecordWriter(buffer).write(data)
    assert frame_record(data) == buffer.getvalue() == frame(data)


def test_same_records_as_tensorboards_reader(dashboard_logdir):
    for path in sorted((dashboard_logdir / FIT_RUN).glob("events.out.tfevents.*")):
        assert list(RecordTail(path).read()) == list(RawEventFileLoader(str(path)).Load())


def test_a_record_written_in_two_parts_is_read_once_whole(dashboard_logdir, tmp_path):
    original = next((dashboard_logdir / FIT_RUN).glob("events.out.tfevents.*"))
    source, records = original.read_bytes(), list(RawEventFileLoader(str(original)).Load())
    growing = tmp_path / "events.out.tfevents.1"
    cut = len(source) - 7  # inside the last record's data
    growing.write_bytes(source[:cut])
    tail = RecordTail(growing)
    assert list(tail.read()) == records[:-1]
    assert list(tail.read()) == []  # still incomplete: nothing, and nothing lost
    with open(growing, "ab") as file:
        file.write(source[cut:])
    assert list(tail.read()) == records[-1:]


def test_a_damaged_header_stops_the_file_and_a_damaged_payload_is_skipped(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(3):
        writer.add_scalar("explain/x/change", float(step), step)
    writer.close()
    path = next((tmp_path / "run").glob("events.out.tfevents.*"))
    good = path.read_bytes()
    path.write_bytes(good + frame(b"\xff\xff not an event") + frame(b""))  # framing fine, payload garbage
    data = read_run(find_runs(tmp_path)[0], images=False)
    assert data.scalars["explain/x/change"] == {0: 0.0, 1: 1.0, 2: 2.0}
    path.write_bytes(good)
    records = list(RecordTail(path).read())
    path.write_bytes(good + b"\x05" + good[1:])  # then a header whose CRC does not match
    tail = RecordTail(path)
    assert list(tail.read()) == records and tail.broken
    assert list(tail.read()) == []
