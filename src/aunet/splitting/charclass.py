"""Character classes for the split rules, as one lookup table over all Unicode code points.

The classes are taken from the ``regex`` package's own definitions, so our vectorised rules agree with a regular
expression written over the same text: whitespace is ``\\s``, digits are ``\\d`` (Unicode decimal digits), and
punctuation is ``[\\p{P}\\p{S}]`` (punctuation and symbols, emoji included). ``\\n`` has a class of its own because
newlines are boundaries at every stage. Everything else (letters, marks, control bytes, invalid UTF-8) is OTHER.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import regex

OTHER = 0
SPACE = 1  # whitespace other than "\n"
NEWLINE = 2  # "\n" only
DIGIT = 3
PUNCT = 4

MAX_CODE_POINT = 0x10FFFF

_CLASS_PATTERNS = ((SPACE, r"\s+"), (DIGIT, r"\d+"), (PUNCT, r"[\p{P}\p{S}]+"))


@lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """Class of every code point 0..0x10FFFF; shape ``[0x110000]``, uint8. Built once (about 0.1 s)."""
    table = np.zeros(MAX_CODE_POINT + 1, dtype=np.uint8)
    # All scalar values except surrogates, as one string; match runs of each class and fill their spans.
    code_points = np.concatenate([np.arange(0, 0xD800), np.arange(0xE000, MAX_CODE_POINT + 1)]).astype("<u4")
    text = code_points.tobytes().decode("utf-32-le")
    for cls, pattern in _CLASS_PATTERNS:
        for match in regex.finditer(pattern, text):
            table[code_points[match.start() : match.end()]] = cls
    table[ord("\n")] = NEWLINE
    return table


@lru_cache(maxsize=1)
def ascii_byte_classes() -> np.ndarray:
    """Class of every byte value as a one-byte character; bytes >= 0x80 map to OTHER. Shape ``[256]``, uint8."""
    table = np.zeros(256, dtype=np.uint8)
    table[:128] = code_point_classes()[:128]
    return table
