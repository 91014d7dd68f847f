"""Split rules: which characters end a segment at a pooling transition, and a registry of them by name.

A rule is written ``name`` or ``name@K`` (``word@2``, ``stride@5``). It maps a :class:`~aunet.splitting.text.Units`
view of a byte string to a boolean mask over units; :func:`aunet.splitting.levels.compute_levels` turns one rule per
transition into per-byte levels and pools each selected unit on its last byte.

Every rule must be *append-stable*: whether unit ``j`` is selected may depend only on units ``<= j``. Training
splits whole documents while generation splits growing prefixes, and the two must agree (P6 in
docs/paper-conformance.md).

Built-in rules
--------------
``word@G`` (the paper's ``word1``/``word2``/``word4`` strategies, G = 1, 2, 4):
    * the whitespace character right after every G-th word is selected. A word is a run of non-whitespace; words
      count in runs separated by exactly one whitespace character, and a longer whitespace run restarts the count
      (a regular expression ``(?:\\S+\\s){G}`` scanned left to right behaves the same way);
    * at every G, the first character of each group of up to 3 digits, the first character of each group of up to
      3 punctuation/symbol characters, and newlines are selected. Newlines right after punctuation belong to it and
      are not selected again; of the other newlines, the first of each whitespace run is selected.
    Deviation from the official code, for append stability: a whitespace run that ends in a newline (``"  \\n"``)
    is pooled on its first newline, not on its first character, whose selection would depend on a later byte.
``stride@K`` (the fixed-stride ablation ``Byte[::K]``):
    the character that contains byte ``K-1``, ``2K-1``, ... of the text is selected (on ASCII text: every K-th
    byte). Stray invalid bytes are never selected.
``cjk@K`` (``word@K`` for text with and without word spaces):
    everything ``word@K`` selects, plus, in every run of consecutive characters of scripts written without spaces
    (class DENSE: Han, Hiragana, Katakana, Thai; see :mod:`aunet.splitting.charclass`), the K-th, 2K-th, ...
    character of the run, counted from its first character. Each such character counts as a word: ``cjk@1`` pools
    every Chinese character, Japanese kana and Thai letter, ``cjk@2`` every second one of a run. On text without
    DENSE characters it equals ``word@K``, so it can replace ``word@K`` on mixed corpora. Nesting: ``cjk@K``
    contains ``word@K``, and ``cjk@2G`` is contained in ``cjk@G`` (multiples of 2G are multiples of G), so
    ``[cjk@1, cjk@2, cjk@4]`` and ``[cjk@1, word@2]`` nest on their own like the ``word`` rules. Limitation, for
    append stability: a boundary cannot wait for the combining marks that may follow a Thai consonant (that would
    look ahead), so with K=1 a Thai vowel or tone mark starts the next segment; the marks are DENSE characters and
    count in the run like letters.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aunet.errors import ConfigError, excerpt
from aunet.splitting.charclass import DENSE, DIGIT, NEWLINE, PUNCT, SPACE
from aunet.splitting.text import Units

RuleFn = Callable[[Units, "int | None"], np.ndarray]


@dataclass(frozen=True)
class SplitRule:
    """A registered rule family. ``fn(units, arg)`` returns a bool mask of shape ``[len(units)]``."""

    name: str
    fn: RuleFn
    takes_arg: bool
    description: str = ""


RULES: dict[str, SplitRule] = {}


def register_rule(name: str, fn: RuleFn, *, takes_arg: bool = False, description: str = "",
                  overwrite: bool = False) -> SplitRule:
    """Register ``fn`` under ``name`` so configs can say ``name`` (or ``name@K`` when ``takes_arg``).

    ``fn(units, arg)`` must return a boolean array over units and be append-stable (see the module docstring);
    ``aunet.splitting.check_append_stable`` tests a rule on sample text.
    """
    if not name or "@" in name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"rule name {name!r} must be alphanumeric (with - or _) and contain no '@'")
    if name in RULES and not overwrite:
        raise ValueError(f"split rule {name!r} is already registered; pass overwrite=True to replace it")
    rule = SplitRule(name, fn, takes_arg, description)
    RULES[name] = rule
    return rule


def parse_rule(spec: str) -> tuple[SplitRule, int | None]:
    """Resolve ``"word@2"`` to its rule and argument; raise :class:`ConfigError` naming the fix otherwise."""
    if not isinstance(spec, str):
        raise ConfigError("", f"a split rule is a string such as 'word@1', got {excerpt(spec)}")
    name, sep, arg_text = spec.partition("@")
    rule = RULES.get(name)
    if rule is None:
        hint = difflib.get_close_matches(name, RULES, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        known = ", ".join(f"{r.name}@K" if r.takes_arg else r.name for r in RULES.values())
        raise ConfigError("", f"unknown split rule {excerpt(spec)}{did_you_mean}; known rules: {known}")
    if not rule.takes_arg:
        if sep:
            raise ConfigError("", f"split rule {excerpt(name)} takes no argument; write {excerpt(name)}, "
                                  f"not {excerpt(spec)}")
        return rule, None
    if not sep or not arg_text.isdigit() or int(arg_text) < 1:
        raise ConfigError("", f"split rule {excerpt(spec)} needs a positive integer argument, e.g. '{name}@2'")
    return rule, int(arg_text)


# --- built-in rules -----------------------------------------------------------------------------------------------


def _run_offsets(positions: np.ndarray) -> np.ndarray:
    """Of sorted unit indices ``positions``, each one's 0-based offset in its run of consecutive indices.

    ``[3, 4, 5, 6, 7, 9]`` gives ``[0, 1, 2, 3, 4, 0]``. Works on the sparse member list rather than the whole
    text, since digits and punctuation are a few percent of prose.
    """
    k = np.arange(positions.size, dtype=np.int64)
    run_start = np.ones(positions.size, dtype=bool)
    run_start[1:] = positions[1:] != positions[:-1] + 1
    return k - np.maximum.accumulate(np.where(run_start, k, 0))


def _group_starts(positions: np.ndarray, size: int) -> np.ndarray:
    """Of sorted unit indices ``positions``, the first of each group of up to ``size`` consecutive ones.

    ``[3, 4, 5, 6, 7, 9]`` with size 3 gives ``[3, 6, 9]`` (runs 3..7 and 9; groups 3-5, 6-7, 9).
    """
    if positions.size == 0:
        return positions
    return positions[_run_offsets(positions) % size == 0]


def _is_whitespace(units: Units) -> np.ndarray:
    """``[m]`` bool: the unit is whitespace (newlines included). Cached on ``units``."""
    cached = units.cache.get("is_ws")
    if cached is None:
        cached = _WS_BY_CLASS[units.cls]
        units.cache["is_ws"] = cached
    return cached


_WS_BY_CLASS = np.zeros(256, dtype=bool)
_WS_BY_CLASS[[SPACE, NEWLINE]] = True


def word_start_boundaries(units: Units) -> np.ndarray:
    """Unit indices selected at every stage by the ``word`` rules: digit groups, punctuation groups, newlines.

    Returns a sorted-per-kind (not globally sorted) int64 array of unit indices.
    """
    cached = units.cache.get("word_start")
    if cached is not None:
        return cached
    cls = units.cls
    digits = _group_starts(np.flatnonzero(cls == DIGIT), 3)
    punct = _group_starts(np.flatnonzero(cls == PUNCT), 3)

    newlines = np.flatnonzero(cls == NEWLINE)
    if newlines.size:
        k = np.arange(newlines.size, dtype=np.int64)
        run_start = np.ones(newlines.size, dtype=bool)
        run_start[1:] = newlines[1:] != newlines[:-1] + 1
        first_of_run = newlines[np.maximum.accumulate(np.where(run_start, k, 0))]
        # Newlines directly after punctuation belong to its group ("?\n" is one group, pooled on "?").
        before = cls[np.maximum(first_of_run - 1, 0)]
        absorbed = (first_of_run > 0) & (before == PUNCT)
        free = newlines[~absorbed]
        # Of the remaining newlines keep the first of each whitespace run. Whitespace runs start at word ends
        # (the first whitespace after a word) or at the very start of the text.
        run_starts, _ = word_ends(units)
        if _is_whitespace(units)[0]:
            run_starts = np.concatenate([[0], run_starts])
        ws_run_of = run_starts[np.searchsorted(run_starts, free, side="right") - 1]
        first_in_run = np.ones(free.size, dtype=bool)
        first_in_run[1:] = free[:-1] < ws_run_of[1:]
        newlines = free[first_in_run]
    result = np.concatenate([digits, punct, newlines])
    units.cache["word_start"] = result
    return result


def word_ends(units: Units) -> tuple[np.ndarray, np.ndarray]:
    """Word ends and their index within the current run of single-spaced words.

    Returns ``(positions, index)``: unit index of the whitespace right after each word (``[K]``, sorted), and the
    word's 0-based position in its run (``[K]``). A run continues while words are separated by exactly one
    whitespace unit; a longer whitespace run starts a new one.
    """
    cached = units.cache.get("word_ends")
    if cached is not None:
        return cached
    if len(units) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    is_ws = _is_whitespace(units)
    ends = np.flatnonzero(is_ws[1:] & ~is_ws[:-1]) + 1  # the first unit can end no word
    k = np.arange(ends.shape[0], dtype=np.int64)
    # Word k+1 continues word k's run iff the unit right after word k's first trailing whitespace is not whitespace.
    reset = np.ones(ends.shape[0], dtype=bool)
    reset[1:] = is_ws[ends[:-1] + 1]
    index = k - np.maximum.accumulate(np.where(reset, k, 0))
    units.cache["word_ends"] = (ends, index)
    return ends, index


def word_rule(units: Units, group: int | None) -> np.ndarray:
    """``word@G``: the whitespace after every G-th word, plus digit/punctuation groups and newlines."""
    g = group or 1
    ends, index = word_ends(units)
    mask = np.zeros(len(units), dtype=bool)
    mask[word_start_boundaries(units)] = True
    mask[ends[index % g == g - 1]] = True
    return mask  # only valid characters have the classes selected here


def dense_run_members(units: Units, every: int) -> np.ndarray:
    """Unit indices of the ``every``-th, ``2*every``-th, ... DENSE character of each run of consecutive DENSE units.

    The offset of a character in its run depends only on the characters before it, so the selection is
    append-stable; a character cut off at the end of the buffer is invalid (class OTHER) until it is complete.
    """
    positions = units.cache.get("dense")
    if positions is None:
        positions = np.flatnonzero(units.cls == DENSE)
        offsets = _run_offsets(positions)
        units.cache["dense"] = positions = (positions, offsets)
    members, offsets = positions
    return members if every == 1 else members[offsets % every == every - 1]


def cjk_rule(units: Units, group: int | None) -> np.ndarray:
    """``cjk@G``: ``word@G``, plus every G-th character of each run of Han, kana or Thai characters."""
    g = group or 1
    mask = word_rule(units, g)
    mask[dense_run_members(units, g)] = True
    return mask


def stride_rule(units: Units, stride: int | None) -> np.ndarray:
    """``stride@K``: the character containing byte ``K-1``, ``2K-1``, ... (pooled on its last byte)."""
    k = stride or 1
    return units.valid & ((units.end + 1) // k > units.start // k)


register_rule("word", word_rule, takes_arg=True, description="whitespace after every K-th word; punctuation, "
              "digit groups of up to 3 and newlines at every stage (the paper's word1/word2/word4)")
register_rule("cjk", cjk_rule, takes_arg=True, description="word@K, plus every K-th character of each run of Han, "
              "Hiragana, Katakana or Thai characters (scripts without word spaces)")
register_rule("stride", stride_rule, takes_arg=True, description="a boundary every K bytes (fixed-stride ablation)")
