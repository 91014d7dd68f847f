"""``aunet bench``: the performance figures of the suite, recorded in BENCHMARKS.md and a JSON file."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure training, pooling, levels, evaluation and generation speed side by side",
        description="Measure, in one process: training throughput of BPE and AU-Net-1..4 at matched FLOPs per "
                    "byte (bytes/s, FLOP/s, utilisation against a dense matmul, ratio to BPE), where an AU-Net-3 "
                    "step spends its time, level computation MB/s, evaluation requests/s batched vs unbatched, "
                    "cascaded generation against recomputation, and peak memory per family. Writes the results "
                    "into BENCHMARKS.md and benchmarks/bench-<device>[-quick][-compiled].json unless --no-write.")
    p.add_argument("--quick", action="store_true", help="smaller models and fewer steps (under 5 min on 2 cores)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training models")
    p.add_argument("--flops-per-byte", type=float, default=None, metavar="F",
                   help="size the training families at F FLOPs per byte (default 1e6 with --quick, else 2e6); "
                        "recorded as its own section")
    p.add_argument("--data", action="store_true",
                   help="only the data stream: pack MB/s with 1 and all processes, units/s fed to one rank at "
                        "simulated world sizes 1, 8, 64 with 1 and 4 loader workers, first batch after resuming at "
                        "micro-batch 1e3..1e6, each against one GPU's consumption at the 1e19 rung (section "
                        "<device>-data)")
    p.add_argument("--corpus", default="gutenberg_en", metavar="NAME",
                   help="corpus of the data bench (default gutenberg_en)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md and the JSON file")
    p.set_defaults(run=run)


def _summary(r: dict) -> str:
    lines = [f"dense matmul ({r['dtype']}): {r['matmul_flops_per_s']:.3g} FLOP/s", "",
             f"training at matched {r['target_flops_per_byte']:.2g} FLOPs/byte (batch 8):", "",
             "| family | params | FLOPs/byte | bytes/s | FLOP/s | of matmul | vs BPE | peak memory |",
             "|---|---|---|---|---|---|---|---|"]
    for family, t in r["train"].items():
        lines.append(f"| {family} | {t['params'] / 1e6:.2f} M | {t['flops_per_byte']:.3g} | {t['bytes_per_s']:.0f} | "
                     f"{t['flops_per_s']:.3g} | {t['utilization']:.0%} | {t['ratio_to_bpe']:.2f} | "
                     f"{t['peak_memory_bytes'] / 2**20:.0f} MiB |")
    if all("time_shares" in t for t in r["train"].values()):
        matmul = r["matmul_flops_per_s"]
        lines += ["", "where each family's step goes (profiler self time) and how fast each part runs (its charged "
                  "FLOPs per second, against the dense matmul):", "",
                  "| family | attention share of FLOPs | time in matmuls | in attention | in everything else | "
                  "matmul part | attention part |", "|---|---|---|---|---|---|---|"]
        for family, t in r["train"].items():
            shares = t["time_shares"]
            lines.append(f"| {family} | {t['attention_flops_share']:.0%} | {shares['matmul']:.0%} | "
                         f"{shares['attention']:.0%} | {shares['other']:.0%} | "
                         f"{t['matmul_part_flops_per_s'] / matmul:.0%} | "
                         f"{t['attention_part_flops_per_s'] / matmul:.0%} |")
    if "linear_flops_per_s" in r:
        rates = ", ".join(f"{f} {v['width']} wide {v['flops_per_s']:.3g}" for f, v in r["linear_flops_per_s"].items())
        lines += ["", f"matmul [4096, w] @ [w, 4w] at each family's first-stage width w (FLOP/s): {rates}"]
    step = r["aunet3_step_seconds"]
    parts = ", ".join(f"{k} {v / step['step']:.0%}" for k, v in step.items() if k != "step")
    lines += ["", f"AU-Net-3 step ({step['step'] * 1e3:.0f} ms): {parts}",
              f"pooling + upsampling: {r['pool_upsample_share']:.1%} of the step; data loader "
              f"{r['data_loader_share']:.1%}",
              f"levels: {r['levels_mb_per_s']:.1f} MB/s on one core",
              f"evaluation: {r['eval']['batched_requests_per_s']:.1f} requests/s batched, "
              f"{r['eval']['unbatched_requests_per_s']:.1f} unbatched ({r['eval']['speedup']:.1f}x)",
              f"generation: cascade {r['generation_1k']['speedup']:.1f}x recomputation at 1k bytes of context, "
              f"{r['generation_speedup_4k']:.1f}x at 4k"]
    return "\n".join(lines)


def targets(r: dict) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` for each performance target of the suite (issue 8), from one bench result."""
    train = r["train"]
    rows = [(f"{f} wall-clock per FLOP within 10% of BPE's (FLOP/s ratio >= 0.91)",
             f"{train[f]['ratio_to_bpe']:.2f}", train[f]["ratio_to_bpe"] >= 1 / 1.1)
            for f in ("aunet2", "aunet3") if f in train]
    worst = min(train, key=lambda f: train[f]["utilization"])
    rows.append(("training FLOP/s >= 50% of the dense matmul, every family",
                 f"{min(t['utilization'] for t in train.values()):.0%} ({worst}) to "
                 f"{max(t['utilization'] for t in train.values()):.0%}",
                 all(t["utilization"] >= 0.5 for t in train.values())))
    rows += [("pooling + upsampling < 10% of an AU-Net-3 step", f"{r['pool_upsample_share']:.1%}",
              r["pool_upsample_share"] < 0.10),
             ("data loading < 2% of a step", f"{r['data_loader_share']:.1%}", r["data_loader_share"] < 0.02),
             ("levels >= 20 MB/s per core", f"{r['levels_mb_per_s']:.0f} MB/s", r["levels_mb_per_s"] >= 20),
             ("cascaded generation >= 5x recomputation at 4k bytes", f"{r['generation_speedup_4k']:.1f}x",
              r["generation_speedup_4k"] >= 5)]
    return rows


def _targets_table(r: dict) -> str:
    return _targets_rows(targets(r))


def _write(result: dict, text: str, command: str) -> None:
    from aunet.bench.record import write_section

    key = f"{result['device']}{'-quick' if result['quick'] else ''}{'-compiled' if result.get('compiled') else ''}"
    if result.get("custom_flops_per_byte"):
        key += f"-{result['target_flops_per_byte']:.0e}".replace("+", "")
    write_section(key, result, text, command, _machine(result["machine"]))


def _targets_rows(rows: list[tuple[str, str, bool]]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in rows]
    return "\n".join(lines)


def _machine(m: dict) -> str:
    return f"{m['platform']}, {m['processor']}, {m.get('cores', m.get('threads'))} " \
           f"{'cores' if 'cores' in m else 'threads'}" + (f", {m['cuda']}" if m.get("cuda") else "")


def run_data(args: argparse.Namespace) -> int:
    from aunet.bench import data
    from aunet.bench.record import write_section

    result = data.run(corpus=args.corpus, quick=args.quick)
    text = data.summary(result) + "\n\n" + _targets_rows(data.targets(result))
    print(json.dumps(result) if args.json else text)
    if not args.no_write:
        key = f"{args.device}-data{'-quick' if args.quick else ''}"
        write_section(key, result, text, " ".join(["aunet", "bench", *map(shlex.quote, sys.argv[2:])]),
                      _machine(result["machine"]))
    return 0


def run(args: argparse.Namespace) -> int:
    from aunet.bench.suite import run as run_suite

    if args.data:
        if args.device != "cpu":
            print("aunet bench: --data measures the loader on this machine's CPU; leave --device at cpu",
                  file=sys.stderr)
            return 2
        return run_data(args)

    if args.flops_per_byte is not None and not args.flops_per_byte > 0:
        print(f"aunet bench: --flops-per-byte must be positive, got {args.flops_per_byte:g}", file=sys.stderr)
        return 2
    result = run_suite(quick=args.quick, device_name=args.device, compile=args.compile,
                       flops_per_byte=args.flops_per_byte)
    text = _summary(result) + "\n\n" + _targets_table(result)
    if args.json:
        print(json.dumps(result))
    else:
        print(text)
    if not args.no_write:
        _write(result, text, " ".join(["aunet", "bench", *map(shlex.quote, sys.argv[2:])]))
    return 0
