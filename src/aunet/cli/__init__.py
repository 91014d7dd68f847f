"""The ``aunet`` command line. Each subcommand lives in its own module with ``add_parser`` and ``run``.

User errors (bad config keys, missing files) print one line, ``error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Sequence

from aunet import __version__
from aunet.cli import (
    analyze_cmd,
    bench_cmd,
    data_cmd,
    eval_cmd,
    flops_cmd,
    generate_cmd,
    presets_cmd,
    sweep_cmd,
    train_cmd,
)
from aunet.errors import UserError, write_error

COMMANDS = (train_cmd, sweep_cmd, eval_cmd, generate_cmd, analyze_cmd, bench_cmd, flops_cmd, presets_cmd, data_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aunet", description="Compute-matched scaling studies of Autoregressive "
                                     "U-Nets (AU-Net) against BPE transformers.")
    parser.add_argument("--version", action="version", version=f"aunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A full disk in a write no record helper wraps (a library's own file, a plot): still one line, not a
        # traceback. Any other OSError is a bug to report, with its traceback.
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {write_error(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
