"""``aunet data list``, ``aunet data prepare NAME`` and ``aunet data pack``: the named corpora, getting the public
ones, and packing training splits ahead of the runs that read them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list the named corpora and download the public ones",
                       description="Named corpora live under the data directory (AUNET_DATA_DIR) and can be used "
                                   "wherever a corpus path is expected (see aunet.data.registry.resolve_corpus).")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    lst = actions.add_parser("list", help="the named corpora, whether each is present, its size and path",
                             description="List the named corpora with whether each is present in the data directory, "
                                         "size and path.")
    lst.add_argument("--json", action="store_true", help="one JSON object per corpus instead of a table")
    lst.set_defaults(run=run_list)
    prep = actions.add_parser("prepare", help="download a public corpus into the data directory",
                              description="Download the named corpus into DEST (default: AUNET_DATA_DIR) unless it is "
                                          "already there. tinyshakespeare comes from GitHub (karpathy/char-rnn); "
                                          "fineweb_edu_sample streams the first 20,000 documents of FineWeb-Edu "
                                          "sample-10BT with the 'datasets' library; fineweb_edu links the parquet "
                                          "shards of a local folder (--source). Written under a temporary name and "
                                          "renamed when complete.")
    prep.add_argument("name", metavar="NAME", help="a corpus name from 'aunet data list'")
    prep.add_argument("--dest", metavar="DIR", help="data directory to write into (default: AUNET_DATA_DIR)")
    prep.add_argument("--source", type=Path, metavar="DIR",
                      help="fineweb_edu: the local folder of FineWeb-Edu's published parquet shards, checked and "
                           "linked (not copied) into the data directory; no network")
    prep.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                      help="network timeout per request (default: 20)")
    prep.set_defaults(run=run_prepare)
    pack = actions.add_parser(
        "pack", help="encode training splits once into packed shards (what runs with data.stream: packed read)",
        description="Encode the training split of each run config (or of every packed run of a sweep) into the "
                    "pack it reads: token ids (BPE) or bytes with their levels (AU-Net) in shard files under "
                    "AUNET_CACHE_DIR/packs/, built once per corpus, split and tokenizer or split rules and shared by "
                    "every run that agrees on them. Uses every core, streams the corpus in bounded memory, and is "
                    "atomic: a killed pack leaves nothing a run would read. A run packs on first use otherwise.",
        epilog="examples:\n"
               "  aunet data pack tiny-aunet2 tiny-bpe                # the packs of two presets\n"
               "  aunet data pack tiny-bpe --data corpora/*.parquet   # another corpus\n"
               "  aunet data pack --sweep sweeps/demo.yaml            # every pack a sweep reads (before sweep run)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pack.add_argument("configs", nargs="*", metavar="CONFIG", help="run config YAML or preset name")
    pack.add_argument("--sweep", action="append", default=[], metavar="SWEEP.yaml",
                      help="pack what every packed run of this sweep reads (repeatable)")
    pack.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a dotted key of every CONFIG, e.g. data.val_fraction=0.1 (repeatable)")
    pack.add_argument("--data", nargs="+", metavar="PATH", help="corpus of every CONFIG: a named corpus, files, "
                      "folders or globs")
    pack.add_argument("--processes", type=int, metavar="N", help="encoding processes (default: every core)")
    pack.add_argument("--no-progress", action="store_true", help="no progress bar")
    pack.set_defaults(run=run_pack)


def _size(n: int) -> str:
    from aunet.formatting import si

    return f"{si(n)}B" if n else "-"


def run_list(args: argparse.Namespace) -> int:
    from aunet.data.registry import list_corpora
    from aunet.formatting import table

    rows = list_corpora()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    cells = [[r["name"], "yes" if r["available"] else "no", _size(r["size"]), r["path"], r["description"]]
             for r in rows]
    print(table(cells, ["name", "available", "size", "path", "description"]))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from aunet.data.registry import prepare_corpus

    path = prepare_corpus(args.name, dest_root=Path(args.dest) if args.dest else None, timeout=args.timeout,
                          source=args.source)
    print(path)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from aunet.data.config import MAX_PACK_PROCESSES
    from aunet.errors import UserError
    from aunet.formatting import plural
    from aunet.training.config import load_run_config

    if not args.configs and not args.sweep:
        raise UserError("aunet data pack: name run configs (or presets) or --sweep SWEEP.yaml; see --help")
    if args.processes is not None and not 1 <= args.processes <= MAX_PACK_PROCESSES:
        raise UserError(f"--processes: {args.processes} is outside 1..{MAX_PACK_PROCESSES}; give the cores to use")
    # What is packed depends on the data and model sections only: a preset without a budget is packable.
    overrides = ["train.budget_flops=null", "train.max_steps=1", *args.overrides]
    if args.data:
        overrides.append(f"data.corpus={json.dumps(args.data if len(args.data) > 1 else args.data[0])}")
    configs = [load_run_config(spec, overrides) for spec in args.configs]  # all refused before anything is packed
    specs = []
    if args.sweep:
        from aunet.sweeps.spec import load_sweep

        specs = [load_sweep(path) for path in args.sweep]
    from aunet.sweeps.packs import pipelines
    from aunet.sweeps.plan import plan_sweep

    for spec in specs:
        configs += [run.config for run in plan_sweep(spec, measure=True).runs]
    needs = pipelines(configs)
    streamed = [c.name for c in configs if c.data.stream != "packed"]
    if streamed and not needs:
        print("nothing to pack: every run reads the streamed data (data.stream: streamed), which has no pack")
        return 0
    for need in needs:
        pipeline = need.pipeline
        if args.processes is not None:
            pipeline.config.pack_processes = args.processes
        pipeline.prepare(progress=not args.no_progress)
        pack = pipeline.ensure_pack()
        m = pack.meta
        print(f"{'packed' if pipeline.pack_built else 'found'} {need.label}: {m.n_units:,} units of "
              f"{plural(m.n_documents, 'document')} ({m.text_bytes / 1e6:.1f} MB of text), read by "
              f"{plural(len(need.run_ids), 'run')}: {pack.folder}")
    return 0
