"""``aunet eval CHECKPOINT``: lm-eval benchmarks and bits per byte of a trained model, recorded in its run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint on lm-eval tasks (offline) and bits per byte",
        description=(
            "Evaluate a run folder or .ckpt with lm-eval's stock task logic on local files (HellaSwag, ARC-Easy, "
            "ARC-Challenge, MMLU from $AUNET_DATA_DIR/benchmarks), and/or report bits per byte on text files. "
            "Writes the lm-eval results and a flat scores.json (\"hellaswag.acc_norm\", \"mmlu.acc\", "
            "\"<task>.acc_bytes\", \"bpb.<name>\", merged with earlier scores) into <run_dir>/eval/, then refreshes "
            "the sweep tables that list the run. --suite multilingual adds bits per byte on parallel sentences in "
            "11 languages and on held-out Chinese and Japanese text (\"multilingual.bpb.<lang>\"); --tasks cute "
            "runs the CUTE character-manipulation tasks (generation, exact match, each subtask reported). Without "
            "--tasks, --bpb and --suite, the four default tasks run."
        ),
        epilog=(
            "examples:\n"
            "  aunet eval results/runs/tiny-aunet2-443af39d2d --limit 50\n"
            "  aunet eval RUN --tasks hellaswag,arc_easy --num-fewshot 5 --device cuda\n"
            "  aunet eval RUN --tasks piqa --task-data piqa=my/piqa_validation.jsonl\n"
            "  aunet eval RUN --bpb corpora/tinyshakespeare/input.txt --bpb held_out=docs.jsonl\n"
            "  aunet eval RUN --suite multilingual --threads 1\n"
            "  aunet eval RUN --tasks cute --limit 20\n"
            "  aunet eval RUN --tasks hellaswag --online          # stock hub datasets, unchanged"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="run folder (results/runs/<run-id>) or .ckpt file")
    p.add_argument("--tasks", help="comma-separated lm-eval task or group names "
                                   "(default: hellaswag,arc_easy,arc_challenge,mmlu unless --bpb or --suite is given; "
                                   "cute: the CUTE tasks, use --limit)")
    p.add_argument("--limit", type=int, help="at most N documents per task (per subject for MMLU; per text for "
                                             "--suite)")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt (default: the task's)")
    p.add_argument("--task-data", action="append", default=[], metavar="TASK=PATH",
                   help="evaluate a stock task on a local .jsonl/.json/.csv/.parquet file (repeatable)")
    p.add_argument("--online", action="store_true", help="use lm-eval's stock hub tasks unchanged (needs network)")
    p.add_argument("--bpb", action="append", default=[], metavar="[NAME=]PATH",
                   help="report bits per byte on a .txt file (one document) or .jsonl (--text-field) (repeatable)")
    p.add_argument("--suite", action="append", default=[], metavar="NAME",
                   help="a fixed set of bits-per-byte texts: multilingual (repeatable; --limit keeps the first N "
                        "sentences or documents of each text)")
    p.add_argument("--text-field", default="text", help="text field of --bpb jsonl files (default: text)")
    p.add_argument("--bpb-bytes", type=int, metavar="N", help="score only the first N bytes of each --bpb file")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default: 16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto (default: cpu)")
    p.add_argument("--dtype", help="float32 (default), bfloat16, float64")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's; 1 is fastest for tiny models on a busy machine)")
    p.add_argument("--max-length", type=int,
                   help="input positions per sequence, BOS included (default: the training length)")
    p.add_argument("--output-dir", type=Path, help="where to write results (default: <run_dir>/eval)")
    p.add_argument("--log-samples", action="store_true", help="keep lm-eval's per-sample records in the results")
    p.add_argument("--seed", type=int, default=1234, help="seed of few-shot sampling and generation")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aunet.evaluation.evaluate import set_offline_environment

    # Before anything imports datasets / huggingface_hub, which read these variables once.
    set_offline_environment(args.online)
    import os

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    from aunet.errors import UserError
    from aunet.evaluation.checkpoint import load_checkpoint
    from aunet.evaluation.evaluate import check_eval_memory, evaluate_loaded, parse_bpb_args, split_suites
    from aunet.evaluation.tasks import DEFAULT_TASKS, parse_task_data
    from aunet.sweeps.table import refresh_tables_for_run

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be a positive integer")
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--max-length", args.max_length, 2),
                               ("--bpb-bytes", args.bpb_bytes, 1), ("--num-fewshot", args.num_fewshot, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} {value}: must be at least {least}")
    if args.tasks is not None:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if not tasks:  # before: '' was taken for "not given" and every default task ran
            raise UserError(f"--tasks {args.tasks!r}: no task names; give comma-separated names (e.g. "
                            f"{','.join(DEFAULT_TASKS)}), or leave --tasks out")
    else:
        tasks = [] if (args.bpb or args.suite) else list(DEFAULT_TASKS)
    suites = [s.strip() for item in args.suite for s in item.split(",") if s.strip()]
    split_suites(tasks, suites)  # an unknown suite fails before the checkpoint is loaded
    task_data = parse_task_data(args.task_data)
    bpb = parse_bpb_args(args.bpb)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be a positive integer")
        import torch

        torch.set_num_threads(args.threads)
    try:
        loaded = load_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype)
        check_eval_memory(loaded, args.batch_size, args.max_length)
        result = evaluate_loaded(loaded, tasks, limit=args.limit, num_fewshot=args.num_fewshot,
                                 batch_size=args.batch_size, max_length=args.max_length, task_data=task_data,
                                 online=args.online, bpb=bpb, bpb_text_field=args.text_field,
                                 bpb_max_bytes=args.bpb_bytes, suites=suites, output_dir=args.output_dir,
                                 log_samples=args.log_samples, seed=args.seed, progress=True)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a crash (I/O, CUDA, out of memory, a bug): one line, traceback kept
        import sys

        from aunet.errors import save_traceback

        message = " ".join(str(exc).split())[:300]
        print(f"error: evaluation of {args.checkpoint} failed: {type(exc).__name__}: {message}; the traceback is "
              f"in {save_traceback(exc, 'eval')}", file=sys.stderr)
        return 1
    width = max((len(k) for k in result["scores"]), default=0)
    for key, value in sorted(result["scores"].items()):
        if not key.endswith("_stderr"):
            stderr = result["scores"].get(f"{key}_stderr")
            extra = f"  ± {stderr:.4f}" if stderr is not None else ""
            print(f"{key.ljust(width)}  {value:.4f}{extra}")
    tables = refresh_tables_for_run(loaded.run_dir) if loaded.run_dir is not None else []
    print(f"wrote {result['eval_dir']} in {result['seconds']:.1f} s"
          + (f"; {len(tables)} sweep table(s) refreshed" if tables else ""))
    return 0
