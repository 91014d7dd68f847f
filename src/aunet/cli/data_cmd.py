"""``aunet data list`` and ``aunet data prepare NAME``: the named corpora and downloading the public ones."""

from __future__ import annotations

import argparse
import json


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
                                          "sample-10BT with the 'datasets' library. The file is written under a "
                                          "temporary name and renamed when complete.")
    prep.add_argument("name", metavar="NAME", help="a corpus name from 'aunet data list'")
    prep.add_argument("--dest", metavar="DIR", help="data directory to write into (default: AUNET_DATA_DIR)")
    prep.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                      help="network timeout per request (default: 20)")
    prep.set_defaults(run=run_prepare)


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
    from pathlib import Path

    from aunet.data.registry import prepare_corpus

    path = prepare_corpus(args.name, dest_root=Path(args.dest) if args.dest else None, timeout=args.timeout)
    print(path)
    return 0
