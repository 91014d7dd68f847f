"""Did the packed stream move a sweep's numbers by more than seed noise?

The packed stream (``data.stream: packed``) reads the same windows as the streamed one in another order, so a packed
run is a different run from its streamed twin. This compares a sweep run on the packed stream (seed 0) with the same
sweep on the streamed data at seeds 0 and 1 (``sweeps/demo.yaml`` and ``sweeps/demo-streams.yaml``):

    aunet sweep run sweeps/demo.yaml && aunet sweep run sweeps/demo-streams.yaml
    python benchmarks/compare_streams.py results/demo results/demo-streams

For every run (family, variant, budget, size multiplier) it prints the validation bits per byte of the three and two
differences: packed minus streamed (the stream's effect plus noise) and streamed seed 1 minus seed 0 (noise alone).
If the stream changed nothing but the order, both differences are draws of the same noise: their root mean squares
agree (an F test on the ratio of their mean squares, the differences taken as zero-mean under that hypothesis), and
the mean of packed minus streamed is zero within its 95% t interval. The tables are printed in Markdown.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from aunet.analysis import tables
from aunet.errors import UserError

KEY = ["family", "variant", "budget_flops", "multiplier"]


def finished(results: Path) -> pd.DataFrame:
    """The finished runs of ``results/runs.csv`` whose numbers are results (:func:`aunet.analysis.tables.finished`:
    a positive finite ``val_bpb`` and compute); ``variant`` is "" for a plain family."""
    return tables.finished(tables.read_runs(results))


def paired(packed: pd.DataFrame, streamed: pd.DataFrame) -> pd.DataFrame:
    """One row per run present in all three: packed seed 0, streamed seeds 0 and 1, and the two differences."""
    p0 = packed[packed["seed"] == 0].set_index(KEY)["val_bpb"].rename("packed")
    s0 = streamed[streamed["seed"] == 0].set_index(KEY)["val_bpb"].rename("streamed_0")
    s1 = streamed[streamed["seed"] == 1].set_index(KEY)["val_bpb"].rename("streamed_1")
    both = pd.concat([p0, s0, s1], axis=1, join="inner").reset_index()
    both["stream_effect"] = both["packed"] - both["streamed_0"]
    both["seed_noise"] = both["streamed_1"] - both["streamed_0"]
    return both.sort_values(["family", "variant", "budget_flops", "multiplier"]).reset_index(drop=True)


def verdict(both: pd.DataFrame) -> dict[str, float]:
    """RMS of each difference, the F test of their mean squares (two-sided), and the mean stream effect with its 95%
    t interval."""
    n = len(both)
    effect, noise = both["stream_effect"].to_numpy(), both["seed_noise"].to_numpy()
    ms_effect, ms_noise = float(np.mean(effect ** 2)), float(np.mean(noise ** 2))
    ratio = ms_effect / ms_noise
    p = 2 * min(stats.f.cdf(ratio, n, n), stats.f.sf(ratio, n, n))
    mean, sd = float(effect.mean()), float(effect.std(ddof=1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"runs": n, "rms_stream_effect": math.sqrt(ms_effect), "rms_seed_noise": math.sqrt(ms_noise),
            "mean_square_ratio": ratio, "f_test_p": float(min(p, 1.0)), "mean_stream_effect": mean,
            "mean_interval_low": mean - half, "mean_interval_high": mean + half}


def report(both: pd.DataFrame, v: dict[str, float]) -> str:
    """The per-run table and the verdict, in Markdown."""
    lines = ["| family | budget | size | packed | streamed s0 | streamed s1 | packed - s0 | s1 - s0 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in both.itertuples():
        name = r.family + (f"-{r.variant}" if r.variant else "")
        lines.append(f"| {name} | {r.budget_flops:.3g} | x{r.multiplier:g} | {r.packed:.4f} | {r.streamed_0:.4f} | "
                     f"{r.streamed_1:.4f} | {r.stream_effect:+.4f} | {r.seed_noise:+.4f} |")
    by_family = both.groupby("family")[["stream_effect", "seed_noise"]].apply(
        lambda g: pd.Series({"stream": math.sqrt(float((g["stream_effect"] ** 2).mean())),
                             "seed": math.sqrt(float((g["seed_noise"] ** 2).mean()))}))
    lines += ["", "| family | RMS packed - s0 | RMS s1 - s0 |", "|---|---|---|"]
    lines += [f"| {f} | {r.stream:.4f} | {r.seed:.4f} |" for f, r in by_family.iterrows()]
    lines += ["", f"{v['runs']} runs: RMS of packed - streamed {v['rms_stream_effect']:.4f} bits per byte, of seed 1 - "
                  f"seed 0 {v['rms_seed_noise']:.4f} (mean-square ratio {v['mean_square_ratio']:.2f}, F test p = "
                  f"{v['f_test_p']:.2f}); mean packed - streamed {v['mean_stream_effect']:+.4f} "
                  f"[{v['mean_interval_low']:+.4f}, {v['mean_interval_high']:+.4f}] (95% t)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packed", type=Path, help="results folder of the sweep on the packed stream (seed 0)")
    parser.add_argument("streamed", type=Path, help="results folder of the same sweep streamed, seeds 0 and 1")
    args = parser.parse_args(argv)
    try:
        both = paired(finished(args.packed), finished(args.streamed))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(both) < 3:
        print(f"only {len(both)} runs finished in all three; run both sweeps to the end", file=sys.stderr)
        return 2
    print(report(both, verdict(both)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
