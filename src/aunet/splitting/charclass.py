"""Character classes for the split rules, as one lookup table over all Unicode code points.

The classes are taken from the ``regex`` package's own definitions, so our vectorised rules agree with a regular
expression written over the same text: whitespace is ``\\s``, digits are ``\\d`` (Unicode decimal digits), and
punctuation is ``[\\p{P}\\p{S}]`` (punctuation and symbols, emoji included). ``\\n`` has a class of its own because
newlines are boundaries at every stage. DENSE marks the characters of scripts written without spaces between words
(:data:`DENSE_SCRIPTS`: Han, Hiragana, Katakana, Thai, by Unicode script extension, so that the prolonged sound mark
``ー`` and the iteration mark ``々`` belong to their words) that are not also whitespace, digits or punctuation: Thai
digits stay DIGIT and ``。`` stays PUNCT. Everything else (Latin and other letters, marks, control bytes, invalid
UTF-8) is OTHER.
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
DENSE = 5  # a letter or mark of a script without word spaces (Han, kana, Thai)

MAX_CODE_POINT = 0x10FFFF

# Scripts written without spaces between words. Script *extensions* (scx) rather than scripts: U+30FC "ー" has
# script Common but is part of katakana and hiragana words.
DENSE_SCRIPTS = ("Han", "Hiragana", "Katakana", "Thai")
DENSE_PATTERN = "[" + "".join(rf"\p{{scx={name}}}" for name in DENSE_SCRIPTS) + "]"

# Later patterns overwrite earlier ones: DENSE first, so that whitespace, digits and punctuation of those scripts
# (Thai digits, "。", "、") keep their own class.
_CLASS_PATTERNS = ((DENSE, DENSE_PATTERN + "+"), (SPACE, r"\s+"), (DIGIT, r"\d+"), (PUNCT, r"[\p{P}\p{S}]+"))


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
