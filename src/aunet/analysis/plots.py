"""Plotting helpers shared by the notebooks: one style per series, saving PNG and SVG, interval bands.

Only drawing lives here; every number drawn comes from :mod:`aunet.analysis` fits or the results tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aunet.analysis.tables import family_color, family_label

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v")


def series_style(series: str, variants: list[str] | None = None) -> dict[str, Any]:
    """Colour, label, marker and line style of one series (``family`` or ``family/variant``).

    The colour is always the family's (:func:`aunet.analysis.tables.family_color`); variants of one family are
    told apart by line style and marker, in the order of ``variants`` (the family's variant labels).
    """
    family, _, variant = series.partition("/")
    index = (variants or []).index(variant) + 1 if variant and variants and variant in variants else 0
    label = family_label(family) + (f" ({variant})" if variant else "")
    return {"color": family_color(family), "label": label, "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
            "marker": _MARKERS[index % len(_MARKERS)]}


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
