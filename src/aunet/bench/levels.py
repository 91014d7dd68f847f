"""Throughput of :func:`aunet.splitting.compute_levels` on English prose, on one CPU core.

    python -m aunet.bench.levels [--data PATH ...] [--rules word@1,word@2,word@4] [--repeats 5] [--json]

By default it reads the Project Gutenberg books under ``$AUNET_DATA_DIR/corpora/gutenberg_en/books``. Each file is
one document (levels are computed per document in training). The process is pinned to one core when the OS allows.
Reported: MB/s (10^6 bytes per second) as the best and the median of ``--repeats`` passes over all documents, and
the share of a training step levels would cost at the paper's 225k bytes/s per GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from aunet.bench.splits import pin_to_one_core, throughput
from aunet.paths import data_dir

PAPER_GPU_BYTES_PER_S = 225_000  # AU-Net-2 training throughput per H100 (paper Table 2)


def _load_documents(paths: list[str]) -> list[bytes]:
    files: list[Path] = []
    if paths:
        for p in map(Path, paths):
            files.extend(sorted(p.glob("*.txt")) if p.is_dir() else [p])
    else:
        files = sorted((data_dir() / "corpora" / "gutenberg_en" / "books").glob("*.txt"))
    if not files:
        raise SystemExit("error: no .txt documents found; pass --data FILE_OR_DIR")
    return [f.read_bytes() for f in files]


def measure(documents: list[bytes], rules: list[str], repeats: int) -> dict:
    """Time ``repeats`` passes of compute_levels over every document; returns MB/s statistics."""
    total = sum(len(d) for d in documents)
    median_mb_s, best_mb_s = throughput(documents, rules, repeats)
    return {"rules": rules, "documents": len(documents), "bytes": total, "mb_per_s_best": best_mb_s,
            "mb_per_s_median": median_mb_s,
            "share_of_gpu_step_at_225k_bytes_per_s": PAPER_GPU_BYTES_PER_S / (median_mb_s * 1e6)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aunet.bench.levels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="*", default=[],
                        help="text files or folders of .txt (default: Gutenberg books)")
    parser.add_argument("--rules", default="word@1,word@2,word@4", help="comma-separated split rules")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    pinning = pin_to_one_core()
    documents = _load_documents(args.data)
    result = measure(documents, args.rules.split(","), args.repeats)
    result.update(machine=platform.machine(), processor=platform.processor() or "unknown", cpu_pinning=pinning,
                  numpy=np.__version__)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"compute_levels({','.join(result['rules'])}) on {result['documents']} documents, "
              f"{result['bytes'] / 1e6:.1f} MB, {pinning}")
        print(f"  {result['mb_per_s_median']:.1f} MB/s median, {result['mb_per_s_best']:.1f} MB/s best "
              f"of {args.repeats}")
        print(f"  at {PAPER_GPU_BYTES_PER_S / 1e3:.0f}k bytes/s of GPU training, levels cost "
              f"{result['share_of_gpu_step_at_225k_bytes_per_s']:.2%} of a step on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
