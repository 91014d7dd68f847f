"""Vectorised UTF-8 decoding of a byte string into *units*: valid characters and stray invalid bytes.

Split rules reason about characters (a word, a digit group), while the model pools bytes. A :class:`Units` view
gives, per unit, its first and last byte and its character class. Every valid UTF-8 character is one unit; every
byte that is not part of a valid character is a unit of its own, of class OTHER, and is never a boundary. Validity
follows the Unicode standard (no overlong forms, no surrogates, nothing above U+10FFFF), so units agree with
Python's ``bytes.decode("utf-8", "surrogateescape")``. A character cut off at the end of the buffer decodes as
invalid bytes: since boundaries sit on a character's last byte, appending the missing bytes later never changes a
decision already taken (append stability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aunet.splitting.charclass import ascii_byte_classes, code_point_classes

# Expected sequence length by lead byte; 0 marks bytes that cannot start a character.
_SEQ_LEN = np.zeros(256, dtype=np.int64)
_SEQ_LEN[0x00:0x80] = 1
_SEQ_LEN[0xC2:0xE0] = 2
_SEQ_LEN[0xE0:0xF0] = 3
_SEQ_LEN[0xF0:0xF5] = 4
# Allowed range of the second byte by lead byte (excludes overlong forms, surrogates and > U+10FFFF).
_SECOND_LO = np.full(256, 0x80, dtype=np.int64)
_SECOND_HI = np.full(256, 0xBF, dtype=np.int64)
_SECOND_LO[0xE0], _SECOND_HI[0xED], _SECOND_LO[0xF0], _SECOND_HI[0xF4] = 0xA0, 0x9F, 0x90, 0x8F
_LEAD_MASK = np.array([0, 0x7F, 0x1F, 0x0F, 0x07], dtype=np.int64)


@dataclass
class Units:
    """A byte string seen as a sequence of ``m`` units.

    Attributes:
        n_bytes: length of the byte string.
        start: ``[m]`` int64, index of each unit's first byte.
        end: ``[m]`` int64, index of each unit's last byte (where a boundary on this unit is pooled).
        cls: ``[m]`` uint8, character class (:mod:`aunet.splitting.charclass`); invalid bytes are OTHER.
        valid: ``[m]`` bool, True for valid characters, False for stray invalid bytes.
        cache: scratch space so that several rules over the same text share intermediate results.
    """

    n_bytes: int
    start: np.ndarray
    end: np.ndarray
    cls: np.ndarray
    valid: np.ndarray
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.start.shape[0])


def decode_units(data: bytes | bytearray | memoryview | np.ndarray) -> Units:
    """Split ``data`` into units (see module docstring). Never raises on any byte string."""
    b = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8, copy=False)
    n = int(b.shape[0])
    byte_cls = np.take(ascii_byte_classes(), b)
    if n == 0 or int(b.max()) < 0x80:  # pure ASCII: one unit per byte
        idx = np.arange(n, dtype=np.int64)
        return Units(n, idx, idx, byte_cls, np.ones(n, dtype=bool))

    # Candidate multi-byte leads are sparse in most text: validate only those.
    lead = np.flatnonzero((b >= 0xC2) & (b <= 0xF4))
    padded = np.concatenate([b, np.zeros(3, dtype=np.uint8)])
    lead_byte = padded[lead].astype(np.int64)
    length = _SEQ_LEN[lead_byte]
    ok = lead + length <= n
    second = padded[lead + 1].astype(np.int64)
    ok &= (second >= _SECOND_LO[lead_byte]) & (second <= _SECOND_HI[lead_byte])
    third, fourth = padded[lead + 2].astype(np.int64), padded[lead + 3].astype(np.int64)
    ok &= (length < 3) | ((third & 0xC0) == 0x80)
    ok &= (length < 4) | ((fourth & 0xC0) == 0x80)
    lead, length, lead_byte = lead[ok], length[ok], lead_byte[ok]
    second, third, fourth = second[ok], third[ok], fourth[ok]

    cp = lead_byte & _LEAD_MASK[length]
    cp = (cp << 6) | (second & 0x3F)
    cp = np.where(length >= 3, (cp << 6) | (third & 0x3F), cp)
    cp = np.where(length >= 4, (cp << 6) | (fourth & 0x3F), cp)

    valid_byte = b < 0x80
    valid_byte[lead] = True
    byte_cls[lead] = code_point_classes()[cp]
    is_start = np.ones(n, dtype=bool)
    for k in (1, 2, 3):  # continuation bytes of valid characters are not units of their own
        is_start[lead[length > k] + k] = False
    start = np.flatnonzero(is_start)
    end = np.empty_like(start)
    end[:-1] = start[1:] - 1
    end[-1] = n - 1
    return Units(n, start, end, byte_cls[start], valid_byte[start])
