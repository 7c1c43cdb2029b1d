"""TensorBoard event files (TFRecord framing): written with a fast CRC, read fast and followed as they grow.

Without TensorFlow installed, TensorBoard's reader checks every record's CRC-32C in pure Python: about 5 MB/s,
so the first look at a long run's 100 MB of grids took 20 s. A record is ``length (8 bytes LE) | masked CRC of
the length (4) | data | masked CRC of the data (4)``. Here the length's CRC (8 bytes, cheap) is checked, so a
torn or garbage header is never taken for a length, and the data's is not: a damaged payload fails to parse as
an ``Event`` instead, and is skipped by the caller. A record not yet fully written is left for the next read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_TABLE = _crc32c_table()


_TABLE_NP = np.array(_TABLE, dtype=np.uint32)
_LANE = 64  # bytes a lane: the data is cut into lanes whose CRCs are computed side by side, then combined
_SHIFTS: dict[int, np.ndarray] = {}


def _apply(tables: np.ndarray, state: np.ndarray) -> np.ndarray:
    """The CRC register ``state`` advanced over as many zero bytes as ``tables`` stand for (linear in ``state``)."""
    return (
        tables[0][state & 0xFF]
        ^ tables[1][(state >> 8) & 0xFF]
        ^ tables[2][(state >> 16) & 0xFF]
        ^ tables[3][state >> 24]
    )


def _shift_tables(nbytes: int) -> np.ndarray:
    """(4, 256) tables of the register's advance over ``nbytes`` zero bytes, one per byte of the register."""
    if nbytes not in _SHIFTS:
        if nbytes == _LANE:
            state = np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]
            for _ in range(nbytes):
                state = (state >> 8) ^ _TABLE_NP[state & 0xFF]
            _SHIFTS[nbytes] = state
        else:  # twice the half: the advance is a linear map, so tables compose
            half = _shift_tables(nbytes // 2)
            _SHIFTS[nbytes] = _apply(half, half)
    return _SHIFTS[nbytes]


def _crc32c_from_zero(data: bytes) -> int:
    """The CRC-32C register after ``data`` from an all-zero start, with numpy: lanes side by side, then a tree."""
    lanes = 1 << max(0, (-(-len(data) // _LANE) - 1).bit_length())  # a power of two, for the pairwise tree
    padded = np.zeros(lanes * _LANE, dtype=np.uint8)  # zeros in front leave a zero register as it is
    padded[padded.size - len(data) :] = np.frombuffer(data, dtype=np.uint8)
    crc = np.zeros(lanes, dtype=np.uint32)
    for column in padded.reshape(lanes, _LANE).T.astype(np.uint32):
        crc = (crc >> 8) ^ _TABLE_NP[(crc ^ column) & 0xFF]
    span = _LANE
    while crc.shape[0] > 1:  # left lane advanced over the right one's bytes, plus the right one
        crc = _apply(_shift_tables(span), crc[0::2]) ^ crc[1::2]
        span *= 2
    return int(crc[0])


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``, as TensorBoard's own, about 12x faster on a 100 KB image record.

    Short inputs (a record's length) take a plain table loop; long ones :func:`_crc32c_from_zero`, with the
    standard start value (all ones) folded into the first four bytes.
    """
    if len(data) < 512:
        crc = 0xFFFFFFFF
        for byte in data:
            crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    else:
        crc = _crc32c_from_zero(bytes(byte ^ 0xFF for byte in data[:4]) + data[4:])
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord: its length, the length's masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class RecordTail:
    """The records of one TFRecord file, each :meth:`read` starting where the previous one stopped.

    ``broken`` turns True at a header whose CRC does not match (a damaged file); nothing more is read from it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self.offset = 0
        self.broken = False

    def read(self) -> Iterator[bytes]:
        """The complete records appended since the last call (a partly written last record waits)."""
        if self.broken:
            return
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            while True:
                header = file.read(12)
                if len(header) < 12:
                    return
                (length,) = struct.unpack("<Q", header[:8])
                if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                    self.broken = True
                    return
                body = file.read(length + 4)
                if len(body) < length + 4:
                    return
                self.offset += 16 + length
                yield body[:length]
