"""Small formatting helpers for human-readable output (the CLI, plot labels)."""

from __future__ import annotations


def si(value: float, digits: int = 3) -> str:
    """``1324203008`` -> ``1.32 B``; ``132096`` -> ``132 K``."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {suffix}"
    return f"{value:.{digits}g}"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned text table with a header row."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    """``plural(1, "run")`` -> ``1 run``; ``plural(3, "run")`` -> ``3 runs``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
