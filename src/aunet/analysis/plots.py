"""Plotting helpers shared by the notebooks: one style per series, saving PNG and SVG, interval bands.

Only drawing lives here; every number drawn comes from :mod:`aunet.analysis` fits or the results tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aunet.analysis.tables import family_color, family_label

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v")
_HATCHES = ("", "//", "..", "xx", "\\\\")


def series_style(series: str, variants: list[str] | None = None) -> dict[str, Any]:
    """Colour, label, marker, line style and bar hatch of one series (``family`` or ``family/variant``).

    The colour is always the family's (:func:`aunet.analysis.tables.family_color`); variants of one family are
    told apart by line style, marker and hatch, in the order of ``variants`` (the family's variant labels).
    """
    family, _, variant = series.partition("/")
    index = (variants or []).index(variant) + 1 if variant and variants and variant in variants else 0
    label = family_label(family) + (f" ({variant})" if variant else "")
    return {"color": family_color(family), "label": label, "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
            "marker": _MARKERS[index % len(_MARKERS)], "hatch": _HATCHES[index % len(_HATCHES)]}


def _shade(color: str, index: int, count: int) -> str:
    """The ``index``-th of ``count`` shades of ``color``, from darker to lighter, so that variants of one family
    keep its hue and stay apart even where their line styles are taken by another meaning (extrapolation)."""
    from matplotlib.colors import to_hex, to_rgb

    t = index / max(1, count - 1)  # 0: darkest, 1: lightest
    rgb = np.array(to_rgb(color))
    dark, light = rgb * 0.55, rgb + (1.0 - rgb) * 0.55
    return to_hex(dark + (light - dark) * t)


def series_styles(series: Iterable[str]) -> dict[str, dict[str, Any]]:
    """:func:`series_style` of every series of a table, variants of one family told apart by marker, line style
    and shade (a family with a single series keeps its own colour)."""
    names = list(dict.fromkeys(series))
    variants: dict[str, list[str]] = {}
    for name in names:
        family, _, variant = name.partition("/")
        if variant:
            variants.setdefault(family, []).append(variant)
    out = {}
    for name in names:
        family, _, variant = name.partition("/")
        style = series_style(name, variants.get(family))
        if variant and len(variants[family]) > 1:
            style["color"] = _shade(family_color(family), variants[family].index(variant), len(variants[family]))
        out[name] = style
    return out


def panel_grid(count: int, max_cols: int, panel_size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, at most ``max_cols`` per row, each ``panel_size`` inches (width, height).

    Returns the figure and its first ``count`` axes in reading order; the unused cells of the last row are hidden.
    """
    import matplotlib.pyplot as plt

    ncols = min(max_cols, count)
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    cells = list(axes.flat)
    for ax in cells[count:]:
        ax.set_visible(False)
    return fig, cells[:count]


def draw_band(ax: Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str, alpha: float = 0.18) -> None:
    """Shade the interval ``[lo, hi]`` over ``x`` (all shape ``[n]``); non-finite bounds leave gaps."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.fill_between(x, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=color, alpha=alpha, linewidth=0)


def finish_axes(ax: Axes, *, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    """Title, axis labels with units, a light grid and a legend (when there is something to label)."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)


def log_scale_si(ax: Axes, axis: str = "x") -> None:
    """Log scale on ``axis`` with ticks at 1, 2, 5 x 10^k labelled in SI units (``300 M``, ``1 B``).

    For sizes that span less than a decade, where the default shows a single label or colliding minor ones.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from aunet.cli.format import si

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: si(value, 3)))
    target.set_minor_formatter(NullFormatter())


def save_figure(fig: Figure, output_dir: str | Path, name: str) -> list[Path]:
    """Write ``output_dir/plots/<name>.png`` (150 dpi) and ``.svg``; returns both paths and closes the figure."""
    folder = Path(output_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    import matplotlib.pyplot as plt  # closing through pyplot frees the figure in a notebook too

    plt.close(fig)
    return paths
