"""``aunet train CONFIG``: train one model to its compute budget and record the run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one model (AU-Net or BPE) to its FLOPs budget",
        description=(
            "Train the model of a run config to its compute budget and write results/runs/<run-id>/ (config, "
            "metrics.csv, summary.json, checkpoints). CONFIG is a YAML file with model/data/train/trainer sections "
            "or a preset name (tiny-bpe, tiny-aunet1 ... tiny-aunet4 train on CPU in under a minute). A finished "
            "run is not trained again; an interrupted one continues with --resume."
        ),
        epilog=(
            "examples:\n"
            "  aunet train tiny-aunet2 --data input.txt   # one text file: its last 5% is the validation split\n"
            "  aunet train tiny-aunet2 --set 'trainer.loggers=[tensorboard, wandb]'   # also TensorBoard, W&B offline\n"
            "  aunet train tiny-bpe --set train.budget_flops=2e12 --set train.lr=1e-3\n"
            "  aunet train my-run.yaml --data corpora/*.jsonl --devices 4 --strategy ddp --precision bf16-mixed\n"
            "  aunet train my-run.yaml --resume            # continue from checkpoints/last.ckpt\n\n"
            "On SIGTERM (sent by SLURM before pre-empting a job) the run saves checkpoints/last.ckpt at the end of\n"
            "the current step and exits 0; --resume continues from there with the same results."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="run config YAML or preset name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted config key, e.g. train.lr=1e-3 (repeatable; values are YAML)")
    # A string, not a Path: argparse would make '' the path '.', the current folder.
    p.add_argument("--run-dir", help="run folder: empty, missing, or this run's own (default: "
                                     "<train.results_dir>/<run-id>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--data", nargs="+", metavar="PATH", help="corpus: a named corpus, files, folders or globs")
    hw = p.add_argument_group("hardware (passed to Lightning)")
    hw.add_argument("--accelerator", help="cpu, gpu, auto (default: the config's, auto)")
    hw.add_argument("--devices", help="number of devices per node, or auto")
    hw.add_argument("--num-nodes", type=int, help="number of nodes (SLURM or torchrun sets the ranks)")
    hw.add_argument("--strategy", help="auto, ddp, fsdp, ...")
    hw.add_argument("--precision", help="32-true, bf16-mixed, ... (default: bf16-mixed on GPU, 32-true on CPU)")
    hw.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    hw.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    out = list(args.overrides)
    if args.data:
        out.append(f"data.corpus={json.dumps(args.data if len(args.data) > 1 else args.data[0])}")
    for key in ("accelerator", "strategy", "precision"):
        if getattr(args, key):
            out.append(f"trainer.{key}={getattr(args, key)}")
    if args.devices:
        out.append(f"trainer.devices={args.devices}")
    if args.num_nodes is not None:  # 0 is refused by the config, not taken for "not given"
        out.append(f"trainer.num_nodes={args.num_nodes}")
    if args.compile:
        out.append("trainer.compile=true")
    if args.no_progress:
        out.append("trainer.progress_bar=false")
    return out


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from aunet.errors import RunStopped, UserError
    from aunet.training.config import load_run_config

    if args.run_dir is not None and not args.run_dir.strip():
        # An unset shell variable: Path('') is the current folder, which would have become the run folder.
        raise UserError("--run-dir '': an empty path (it would be the current folder); give the run folder's path")
    run_dir = Path(args.run_dir) if args.run_dir is not None else None
    config = load_run_config(args.config, overrides_from_args(args))
    from aunet.training.run import train  # Lightning's import takes seconds: only once the config is known good
    name = (run_dir or Path(config.run_id())).name
    started = time.time()
    try:
        summary = train(config, run_dir=run_dir, resume=args.resume)
    except RunStopped as stop:  # SIGTERM (SLURM pre-emption): the checkpoint is saved, a clean exit
        print(f"run {name}: {stop}", file=sys.stderr)
        return 0
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of the run (I/O, CUDA, a bug): one line, the traceback kept
        # train() has ended the DataLoader workers and recorded the run as failed (failure.json, with the traceback),
        # so the process ends now instead of printing a traceback and then waiting on its workers forever.
        from aunet.training.records import RunPaths

        failure = RunPaths(run_dir or Path(config.train.results_dir) / config.run_id()).failure
        recorded = failure.is_file() and failure.stat().st_mtime >= started - 1  # this attempt's, not an earlier one
        where = f"the traceback is in {failure}" if recorded else "no failure record could be written"
        message = " ".join(str(exc).split())[:300]
        print(f"error: run {name} failed: {type(exc).__name__}: {message}; {where}", file=sys.stderr)
        return 1
    if summary:
        print(f"run {summary.run_id}: val_bpb {summary.val_bpb:.4f}, {summary.steps} steps, "
              f"{summary.flops_spent:.3g} FLOPs, {summary.throughput['bytes_per_s']:.0f} bytes/s")
    return 0
