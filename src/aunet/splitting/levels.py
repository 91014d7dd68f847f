"""From split rules to per-byte levels: the input the AU-Net pools by."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aunet.errors import ConfigError
from aunet.splitting.rules import parse_rule
from aunet.splitting.text import Units, decode_units


def rule_selections(data: bytes | np.ndarray | Units, rules: Sequence[str]) -> list[np.ndarray]:
    """Raw selection of each rule on its own, in byte coordinates: a list of ``[n_bytes]`` bool arrays.

    Selections are pooled on the last byte of each selected character. Unlike :func:`compute_levels` these are not
    nested by construction; for the built-in ``word@G`` rules they nest anyway (tested).
    """
    units = data if isinstance(data, Units) else decode_units(data)
    out = []
    for spec in rules:
        rule, arg = parse_rule(spec)
        selected = np.asarray(rule.fn(units, arg), dtype=bool)
        if selected.shape != (len(units),):
            raise ConfigError("", f"split rule {spec!r} returned shape {selected.shape}, expected ({len(units)},)")
        mask = np.zeros(units.n_bytes, dtype=bool)
        mask[units.end[selected & units.valid]] = True
        out.append(mask)
    return out


def compute_levels(data: bytes | bytearray | memoryview | np.ndarray, rules: Sequence[str]) -> np.ndarray:
    """Per-byte level: the number of pooling transitions that select the byte.

    Args:
        data: any byte string (invalid UTF-8 included).
        rules: one rule per transition, shallowest first, e.g. ``["word@1", "word@2", "word@4"]`` for 4 stages.

    Returns:
        ``[len(data)]`` uint8 array with values in ``0..len(rules)``. Transition ``i`` selects the bytes with
        level ``> i``. A byte only reaches transition ``i+1`` if transition ``i`` selected it, so deeper stages
        always pool a subset of shallower ones (P4 in docs/paper-conformance.md). Selected bytes are the last byte of
        a valid UTF-8 character; the result for a prefix of ``data`` is the prefix of the result (append stability).
    """
    if len(rules) > 255:
        raise ConfigError("splits", f"at most 255 split rules fit a uint8 level, got {len(rules)}")
    units = decode_units(data)
    parsed = [parse_rule(spec) for spec in rules]
    level = np.zeros(len(units), dtype=np.uint8)
    alive = units.valid.copy()
    for (rule, arg), spec in zip(parsed, rules):
        selected = np.asarray(rule.fn(units, arg), dtype=bool)
        if selected.shape != (len(units),):
            raise ConfigError("", f"split rule {spec!r} returned shape {selected.shape}, expected ({len(units)},)")
        alive &= selected
        level += alive
    out = np.zeros(units.n_bytes, dtype=np.uint8)
    out[units.end] = level
    return out
