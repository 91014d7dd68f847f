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
from aunet.formatting import si

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

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: si(value, 3)))
    target.set_minor_formatter(NullFormatter())


def log_scale_plain(ax: Axes, axis: str = "x") -> None:
    """Log scale on ``axis`` with ticks at 1, 2, 5 x 10^k labelled as plain numbers (``0.002``, ``0.01``): for
    quantities such as learning rates, where an SI prefix would read oddly and the default labels collide."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
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


# Orders of the byte n-gram drawn by default besides the best one: the low orders locate the smallest models
# (byte unigram, bigram, ...); the orders between 4 and the best crowd within a few hundredths of a bit of it.
REFERENCE_ORDERS = (1, 2, 3, 4)
_REFERENCE_GREY = "0.45"
_LABEL_GAP = 0.035  # least vertical distance between two reference labels, as a fraction of the axes height


def reference_levels_to_draw(record: dict[str, Any], orders: Iterable[int] | None = None
                             ) -> list[tuple[str, float, str]]:
    """``(label, bits per byte, kind)`` of each line :func:`draw_reference_levels` draws from a
    ``fits.json["reference_levels"]`` record, ``kind`` being ``"ngram"`` or ``"bpe_unigram"``.

    The n-gram orders are ``orders`` (default :data:`REFERENCE_ORDERS`) that the record holds, plus its best order.
    """
    ng = record.get("byte_ngram") or {}
    levels = dict(zip(ng.get("orders", []), ng.get("bpb", [])))
    best = ng.get("best_order")
    wanted = [o for o in dict.fromkeys([*(REFERENCE_ORDERS if orders is None else orders), best]) if o in levels]
    out = [(f"byte {o}-gram" + (" (best n-gram)" if o == best else ""), float(levels[o]), "ngram")
           for o in sorted(wanted) if levels[o] is not None]
    uni = record.get("bpe_unigram") or {}
    if uni.get("bpb") is not None:
        out.append(("BPE token unigram", float(uni["bpb"]), "bpe_unigram"))
    return out


def draw_reference_levels(ax: Axes, record: dict[str, Any] | None, orders: Iterable[int] | None = None
                          ) -> list[tuple[Any, Any]]:
    """Draw the reference levels of ``record`` (``fits.json["reference_levels"]``) as horizontal lines across
    ``ax``, each labelled at the right edge with its name and bits per byte; returns ``(Line2D, Text)`` pairs.

    Call it after the data is drawn: the labels are placed, and kept apart, within the y-range the data set. The
    lines are left out of the legend (their labels sit on them). Grey dotted: Kneser-Ney byte n-grams; dash-dot in
    BPE's colour: the BPE tokenizer's unigram. Nothing is drawn for a missing or empty record.
    """
    from matplotlib.transforms import blended_transform_factory

    if not record:
        return []
    levels = reference_levels_to_draw(record, orders)
    if not levels:
        return []
    drawn = []
    for label, bpb, kind in levels:
        style = ({"color": family_color("bpe"), "linestyle": "-."} if kind == "bpe_unigram"
                 else {"color": _REFERENCE_GREY, "linestyle": ":"})
        drawn.append(ax.axhline(bpb, linewidth=0.9, alpha=0.8, zorder=1, **style))
    ax.autoscale_view()
    # Label heights in axes fractions, pushed upwards where two would overlap.
    to_axes = ax.transAxes.inverted()
    heights = [float(to_axes.transform(ax.transData.transform((0.0, bpb)))[1]) for _, bpb, _ in levels]
    order = np.argsort(heights)
    placed = np.array(heights)
    for previous, current in zip(order[:-1], order[1:]):
        placed[current] = max(placed[current], placed[previous] + _LABEL_GAP)
    blend = blended_transform_factory(ax.transAxes, ax.transAxes)
    pairs = []
    for line, (label, bpb, _), y in zip(drawn, levels, placed):
        text = ax.text(0.995, y + 0.004, f"{label}: {bpb:.3f}", transform=blend, ha="right", va="bottom",
                       fontsize=7, color=line.get_color(), zorder=4,  # above curves and bands, kept readable
                       bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.8})
        pairs.append((line, text))
    return pairs
