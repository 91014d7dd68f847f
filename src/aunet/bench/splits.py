"""Compression and speed of split rules on real text: bytes per segment per language, and MB/s.

    python -m aunet.bench.splits [--rules word@1,cjk@1,cjk@2,cjk@4] [--repeats 5] [--max-bytes 2000000] [--json]

Compression is the stage-2 view of AU-Net-2: UTF-8 bytes divided by the bytes a rule selects (the positions the
second stage runs on), with levels computed per document as in training. It decides the stage-2 cap a rule needs
(P5) and so its FLOPs per byte. Speed is :func:`~aunet.splitting.compute_levels` throughput over whole documents on
one core (the process is pinned to one when the OS allows), the median and best of ``--repeats`` passes, and the
same text joined into one document (the rate without the fixed cost of a call).

Texts, all read from the data directory (``AUNET_DATA_DIR``): English Project Gutenberg books (``gutenberg_en``,
one document per book), Simplified Chinese Wikipedia paragraphs (``zh_cmrc2018``), Japanese Wikipedia sentences
(``ja_wikipedia_kyoto``), the Thai sentences of the parallel PUD treebank (``ud_pud/th``) and, for the same
content in every language, the PUD sentences in English, Chinese (Traditional) and Japanese.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aunet.data.registry import resolve_corpus
from aunet.errors import UserError
from aunet.paths import data_dir
from aunet.splitting.levels import compute_levels

DEFAULT_RULES = ("word@1", "cjk@1", "cjk@2", "cjk@4")
PUD = "corpora/multilingual/ud_pud"


@dataclass(frozen=True)
class TextSet:
    """A named list of documents for measuring: ``where`` says where they came from."""

    name: str
    where: str
    documents: list[bytes]

    @property
    def n_bytes(self) -> int:
        return sum(len(d) for d in self.documents)


def _capped(documents: Iterable[bytes], max_bytes: int | None) -> list[bytes]:
    """Whole documents until ``max_bytes`` is reached (the last one may pass it; none is cut)."""
    out, total = [], 0
    for doc in documents:
        if max_bytes is not None and total >= max_bytes:
            break
        if doc:
            out.append(doc)
            total += len(doc)
    return out


def _jsonl_texts(path: Path, field: str = "text") -> Iterable[bytes]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)[field].encode("utf-8")


def load_text_sets(max_bytes: int | None = 2_000_000) -> list[TextSet]:
    """The measured texts (see the module docstring), each capped at about ``max_bytes`` bytes of whole documents."""

    root = data_dir()
    sets = []
    for name, corpus in (("en", "gutenberg_en"), ("zh", "zh_cmrc2018"), ("ja", "ja_wikipedia_kyoto")):
        source, _ = resolve_corpus(corpus)
        sets.append(TextSet(name, corpus, _capped((d.data for d in source.documents()), max_bytes)))
    for lang in ("th", "en", "zh", "ja"):
        path = root / PUD / f"{lang}.jsonl"  # type: ignore[operator]
        if not path.is_file():
            raise UserError(f"{path}: missing; the PUD sentences are expected in the data directory (AUNET_DATA_DIR)")
        sets.append(TextSet(f"{lang}_pud", f"ud_pud/{lang}.jsonl", _capped(_jsonl_texts(path), max_bytes)))
    return sets


def bytes_per_segment(documents: Sequence[bytes], rule: str) -> float:
    """UTF-8 bytes per byte the rule selects, over ``documents`` split one by one (BOS not counted)."""
    selected = sum(int(np.count_nonzero(compute_levels(doc, [rule]))) for doc in documents)
    return sum(len(d) for d in documents) / max(1, selected)


def throughput(documents: Sequence[bytes], rules: list[str], repeats: int) -> tuple[float, float]:
    """``(median, best)`` MB/s (10^6 bytes per second) of computing the levels of every document."""
    total = sum(len(d) for d in documents)
    compute_levels(documents[0][:4096], rules)  # lookup tables are built once, outside the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for doc in documents:
            compute_levels(doc, rules)
        times.append(time.perf_counter() - start)
    return total / statistics.median(times) / 1e6, total / min(times) / 1e6


def measure(sets: Sequence[TextSet], rules: Sequence[str], speed_rules: Sequence[Sequence[str]],
            speed_sets: Sequence[str] = ("en", "zh"), repeats: int = 5) -> dict:
    """Bytes per segment of every rule on every text set, and MB/s of ``speed_rules`` on ``speed_sets``."""
    compression = {s.name: {rule: bytes_per_segment(s.documents, rule) for rule in rules} for s in sets}
    by_name = {s.name: s for s in sets}
    speed = []
    for name in speed_sets:
        docs = by_name[name].documents
        for rule_list in speed_rules:
            median, best = throughput(docs, list(rule_list), repeats)
            # The same text as one document: the rate without the fixed cost of each call (50-100 us), which
            # dominates short documents such as the 1.4 kB Chinese paragraphs.
            joined, _ = throughput([b"\n".join(docs)], list(rule_list), repeats)
            speed.append({"text": name, "rules": list(rule_list), "documents": len(docs), "mb_per_s_median": median,
                          "mb_per_s_best": best, "mb_per_s_joined_median": joined})
    return {"texts": {s.name: {"source": s.where, "documents": len(s.documents), "bytes": s.n_bytes} for s in sets},
            "bytes_per_segment": compression, "speed": speed, "repeats": repeats}


def pin_to_one_core() -> str:
    """Pin this process to one CPU core (per-core throughput figures); returns what was done, for the report."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity on this OS)"


def format_report(result: dict) -> str:
    """Markdown tables of a :func:`measure` result."""
    rules = list(next(iter(result["bytes_per_segment"].values())))
    lines = ["| text | source | documents | bytes | " + " | ".join(rules) + " |",
             "|---|---|---|---|" + "---|" * len(rules)]
    for name, per_rule in result["bytes_per_segment"].items():
        info = result["texts"][name]
        lines.append(f"| {name} | {info['source']} | {info['documents']} | {info['bytes']:,} | "
                     + " | ".join(f"{per_rule[r]:.2f}" for r in rules) + " |")
    lines += ["", "| text | rules | documents | MB/s per document (median / best) | MB/s joined into one (median) |",
              "|---|---|---|---|---|"]
    for row in result["speed"]:
        lines.append(f"| {row['text']} | {','.join(row['rules'])} | {row['documents']} | "
                     f"{row['mb_per_s_median']:.1f} / {row['mb_per_s_best']:.1f} | "
                     f"{row['mb_per_s_joined_median']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aunet.bench.splits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES), help="rules whose compression is measured")
    parser.add_argument("--speed-rules", default="word@1,word@2,word@4;cjk@1,cjk@2,cjk@4",
                        help="rule lists timed for MB/s, separated by ';' (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="bytes of whole documents per text")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    args = parser.parse_args(argv)
    try:
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        speed_rules = [[r.strip() for r in group.split(",") if r.strip()] for group in args.speed_rules.split(";")]
        compute_levels(b"x", rules + [r for group in speed_rules for r in group])  # unknown rules fail here
        pinning = "not pinned (--no-pin)" if args.no_pin else pin_to_one_core()
        result = measure(load_text_sets(args.max_bytes), rules, speed_rules, repeats=args.repeats)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.update(machine=platform.machine(), processor=platform.processor() or "unknown", cpu_pinning=pinning,
                  numpy=np.__version__, python=platform.python_version())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_report(result))
        print(f"\n{platform.machine()}, numpy {np.__version__}, {pinning}, median of {args.repeats} passes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
