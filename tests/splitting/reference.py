"""A slow, obviously-correct reference for the split rules: regular expressions over the decoded text.

The vectorised implementation in :mod:`aunet.splitting` must agree with it byte for byte. Text is decoded with
``surrogateescape`` so every invalid byte is one character (a lone surrogate, never selected), and each character's
selection is placed on its last byte.
"""

from __future__ import annotations

import numpy as np
import regex

# Start rule: digit groups, punctuation groups (with the newlines that follow them), and a newline that opens the
# rest of a whitespace run. End rule: the whitespace character after every G-th single-spaced word.
START = regex.compile(r"\d{1,3}|[\p{P}\p{S}]{1,3}\n*|\n\s*")
WORDS = {g: regex.compile(r"(?:\S+\s){%d}" % g) for g in (1, 2, 3, 4, 5)}
# cjk rule: maximal runs of characters whose script extensions include Han, Hiragana, Katakana or Thai, excluding
# whitespace, digits, punctuation and symbols (those keep the word rule's meaning).
DENSE_RUN = regex.compile(
    r"(?:(?![\s\d\p{P}\p{S}])[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{scx=Thai}])+"
)


def char_spans(data: bytes) -> tuple[str, list[int], list[int], list[bool]]:
    text = data.decode("utf-8", "surrogateescape")
    starts, ends, valid, pos = [], [], [], 0
    for ch in text:
        width = len(ch.encode("utf-8", "surrogateescape"))
        starts.append(pos)
        ends.append(pos + width - 1)
        valid.append(not "\udc80" <= ch <= "\udcff")
        pos += width
    return text, starts, ends, valid


def reference_selection(data: bytes, spec: str) -> np.ndarray:
    """Selected characters of one rule, as a byte mask (``[len(data)]`` bool)."""
    text, starts, ends, valid = char_spans(data)
    name, _, arg = spec.partition("@")
    k = int(arg)
    chosen: set[int] = set()
    if name in ("word", "cjk"):
        chosen |= {m.start() for m in START.finditer(text)}
        chosen |= {m.end() - 1 for m in WORDS[k].finditer(text)}
        if name == "cjk":  # also the k-th, 2k-th, ... character of every run
            chosen |= {i for m in DENSE_RUN.finditer(text) for i in range(m.start() + k - 1, m.end(), k)}
    elif name == "stride":
        chosen |= {i for i, (s, e) in enumerate(zip(starts, ends)) if any((j + 1) % k == 0 for j in range(s, e + 1))}
    else:
        raise ValueError(spec)
    mask = np.zeros(len(data), dtype=bool)
    for i in chosen:
        if valid[i]:
            mask[ends[i]] = True
    return mask


def reference_levels(data: bytes, rules: list[str]) -> np.ndarray:
    """Levels as the number of leading rules that select a byte (nesting by construction)."""
    level = np.zeros(len(data), dtype=np.uint8)
    alive = np.ones(len(data), dtype=bool)
    for spec in rules:
        alive &= reference_selection(data, spec)
        level += alive
    return level
