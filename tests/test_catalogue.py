"""The bad-input catalogue (issue 19): a hostile or careless input to any command ends with one line naming the file
or key and the fix, exit code 2, no traceback, and nothing written or changed on disk. See docs/reliability.md.

Each case builds its input under a fresh folder (the working directory of the command) and returns the command
line; the test snapshots the folder before the command and requires it unchanged after: nothing half-written,
nothing moved, no temporary file. Cases that need a trained run copy one trained once per module.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

import aunet.sweeps.spec  # noqa: F401 - imported before any timing: a first import is not the command's time
import aunet.training.run  # noqa: F401
from aunet.cli import main
from tests.sweeps.helpers import MICRO
from tests.threads import single_thread


def bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML flow sequence of nested aliases: under 500 bytes, ``width ** levels`` (about 4e8) values expanded."""
    parts = ["&a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


BOMB = bomb()
assert len(BOMB.encode()) < 500


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` with its kind and content (sha256) or link target; not times."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            elif path.is_file():
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("special",)  # a pipe: reading it would block
    return out


def run_config(tmp: Path, extra: str = "", train: str = "{max_steps: 2}") -> Path:
    path = tmp / "run.yaml"
    path.write_text(f"model: {{preset: tiny-aunet1}}\ntrain: {train}\n{extra}")
    return path


def sweep_file(tmp: Path, extra: str = "", **changes) -> Path:
    spec = {**MICRO, "results_dir": str(tmp / "results"), **changes}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False) + extra)
    return path


@dataclass(frozen=True)
class Case:
    """``build(tmp)`` writes the input files and returns the command line; ``words`` must all appear in the one
    line of stderr; the command must end within ``seconds`` when given."""

    build: Callable[..., list[str]]
    words: tuple[str, ...]
    code: int = 2
    seconds: float | None = None
    runs: bool = False  # build(tmp, runs) takes the module's trained runs


def _duplicate_family(tmp: Path) -> list[str]:
    path = sweep_file(tmp)
    text = path.read_text()
    # The same family twice: YAML alone would keep the second, a different model under the first one's run ids.
    path.write_text(text.replace("families:\n", "families:\n  aunet2: {model: tiny-aunet1}\n", 1))
    return ["sweep", "plan", str(path), "--no-probe"]


CONFIG_CASES = {
    # Duplicate keys: PyYAML alone keeps the last silently (a second train: block set LR 5, bpb 333).
    "duplicate section in a run config": Case(
        lambda t: ["train", str(run_config(t, "train: {lr: 5}\n"))],
        ("run.yaml: line 3: duplicate key 'train' (first at line 2)", "keep one of them")),
    "duplicate key inside a section": Case(
        lambda t: ["train", str(run_config(t, train="{max_steps: 2, lr: 1.0e-3, lr: 5}"))],
        ("run.yaml: line 2: duplicate key 'lr'", "keep one of them")),
    "duplicate key in --set": Case(
        lambda t: ["train", "tiny-aunet1", "--set", "train={max_steps: 2, lr: 1, lr: 5}"],
        ("error: --set: train: cannot parse value: line 1: duplicate key 'lr'")),
    "duplicate family in a sweep": Case(_duplicate_family, ("sweep.yaml: line", "duplicate key 'aunet2'")),
    # Alias bombs: a 500-byte file that expands to 4e8 values (gigabytes and minutes when printed in an error).
    "alias bomb in a run config": Case(
        lambda t: ["train", str(run_config(t, train=f"{{max_steps: 2, lr: {BOMB}}}"))],
        ("run.yaml: aliases expand to", "write the values out"), seconds=2.0),
    "alias bomb in --set": Case(
        lambda t: ["train", "tiny-aunet1", "--set", f"train.lr={BOMB}"],
        ("error: --set: train.lr: cannot parse value: aliases expand to",), seconds=2.0),
    "alias bomb in a sweep description": Case(
        lambda t: ["sweep", "plan", str(sweep_file(t, f"description: {BOMB}\n")), "--no-probe"],
        ("sweep.yaml: aliases expand to",), seconds=2.0),
    "alias bomb in analyze --param": Case(
        lambda t: ["analyze", str(t), "--param", f"n_boot={BOMB}"], ("aliases expand to",), seconds=2.0),
    "recursive alias": Case(
        lambda t: ["train", str(run_config(t, "data: &d {val_documents: [*d]}\n"))],
        ("run.yaml: line 3: an alias refers to a value that contains it",)),
    "a long wrong value is not printed whole": Case(
        lambda t: ["train", "tiny-aunet1", "--set", "train.lr=[" + ", ".join(["1"] * 20000) + "]"],
        ("train.lr: expected a number, got [1, 1, 1, 1, ...]",)),
    # Two merge keys in one mapping: PyYAML keeps the last, dropping the first's keys without a word.
    "two merge keys in one mapping": Case(
        lambda t: ["train", str(run_config(t, "base: &a {lr: 1.0e-3}\nmore: &b {seed: 1}\n"
                                              "x:\n  <<: *a\n  <<: *b\n"))],
        ("run.yaml: line 7: a second merge key '<<' in one mapping (first at line 6)", "<<: [*first, *second]")),
}


class Runs:
    """Runs trained once for the module: ``a`` stopped after its checkpoint of step 2; ``b`` the same model on other
    data settings, stopped the same way; ``done`` finished. Each is a (folder, config dict)."""

    def __init__(self, root: Path) -> None:
        from aunet.training.run import train
        from tests.training.helpers import tiny_run
        from tests.training.test_run import Crash, CrashAt

        def stopped(name: str, **data) -> tuple[Path, dict]:
            run = tiny_run(root / name, train={"max_steps": 4, "val_every_steps": 2}, data={"val_bytes": 100, **data})
            with single_thread(), pytest.raises(Crash):
                train(run, callbacks=[CrashAt(step=2)])
            return root / name / "runs" / run.run_id(), run.to_dict()

        self.a = stopped("a")
        self.b = stopped("b", val_bytes=120)  # same model section, another config (the data it validates on)
        done = tiny_run(root / "done", train={"max_steps": 2, "val_every_steps": 2}, data={"val_bytes": 100})
        with single_thread():
            train(done)
        self.done = root / "done" / "runs" / done.run_id(), done.to_dict()


def copy_run(source: tuple[Path, dict], tmp: Path) -> tuple[Path, Path]:
    """A copy of a trained run in ``tmp/run`` and its config file ``tmp/run.yaml``."""
    import shutil

    folder, config = source
    shutil.copytree(folder, tmp / "run")
    (tmp / "run.yaml").write_text(json.dumps(config))
    return tmp / "run", tmp / "run.yaml"


def resume(tmp: Path, runs: Runs, change: Callable[[Path], object]) -> list[str]:
    run_dir, config = copy_run(runs.a, tmp)
    change(run_dir)
    return ["train", str(config), "--run-dir", str(run_dir), "--resume"]


def _foreign_checkpoint(tmp: Path, runs: Runs) -> list[str]:
    import shutil

    return resume(tmp, runs, lambda d: shutil.copyfile(runs.b[0] / "checkpoints" / "last.ckpt",
                                                      d / "checkpoints" / "last.ckpt"))


def _changed_corpus(tmp: Path, runs: Runs) -> list[str]:
    """The same config over a data directory whose corpus changed: the config cannot tell, the data can."""
    source = Path(os.environ["AUNET_DATA_DIR"]) / "corpora" / "tinyshakespeare" / "input.txt"
    changed = tmp / "data" / "corpora" / "tinyshakespeare" / "input.txt"
    changed.parent.mkdir(parents=True)
    changed.write_bytes(source.read_bytes().replace(b"First Citizen", b"Second Citizen"))
    os.environ["AUNET_DATA_DIR"] = str(tmp / "data")  # restored by the test (monkeypatch)
    # An empty cache: the changed corpus has no pack yet, so a resume that packed before checking would say so.
    os.environ["AUNET_CACHE_DIR"] = str(tmp.parent / "empty-cache")
    return resume(tmp, runs, lambda d: None)


def _dangling_link(tmp: Path, runs: Runs) -> list[str]:
    def change(run_dir: Path) -> None:
        last = run_dir / "checkpoints" / "last.ckpt"
        last.unlink()
        last.symlink_to(tmp / "other-disk" / "last.ckpt")  # the checkpoint moved to a disk not mounted now

    return resume(tmp, runs, change)


def _no_identity(tmp: Path, runs: Runs) -> list[str]:
    def change(run_dir: Path) -> None:
        import torch

        last = run_dir / "checkpoints" / "last.ckpt"
        ckpt = torch.load(last, weights_only=True)
        del ckpt["hyper_parameters"]["identity"]
        torch.save(ckpt, last)

    return resume(tmp, runs, change)


def _older_checkpoint(tmp: Path, runs: Runs) -> list[str]:
    # The run recorded a checkpoint of step 4; the file in place is of step 2 (an older copy put back).
    return resume(tmp, runs, lambda d: (d / "logs" / "checkpoint.json").write_text('{"step": 4}'))


def _copied_over(tmp: Path, runs: Runs) -> list[str]:
    """A finished run's folder copied over another run's (the same model and data, another seed): reported as that
    run's result before (its parameters, bits per byte and FLOPs)."""
    run_dir, config = copy_run(runs.done, tmp)
    other = json.loads(config.read_text())
    other["train"]["seed"] += 1
    config.write_text(json.dumps(other))
    return ["train", str(config), "--run-dir", str(run_dir)]


def _summary_replaced(tmp: Path, runs: Runs) -> list[str]:
    """This run's folder, its summary replaced by another run's (its config fingerprint is the other run's)."""
    run_dir, config = copy_run(runs.done, tmp)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "config_fingerprint": "0" * 64}))
    return ["train", str(config), "--run-dir", str(run_dir)]


def _final_weights_replaced(tmp: Path, runs: Runs) -> list[str]:
    import torch

    run_dir, config = copy_run(runs.done, tmp)
    final = run_dir / "checkpoints" / "final.ckpt"
    ckpt = torch.load(final, weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.startswith("model."))
    ckpt["state_dict"][name] = ckpt["state_dict"][name] + 1e-3
    torch.save(ckpt, final)
    return ["train", str(config), "--run-dir", str(run_dir)]


def _foreign_folder(tmp: Path) -> list[str]:
    mine = tmp / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my,own,numbers\n1,2,3\n")  # trained into, and overwritten, before
    return ["train", str(run_config(tmp)), "--run-dir", str(mine)]


def _nan_checkpoint(tmp: Path, runs: Runs) -> list[str]:
    """A bare checkpoint whose weights hold a NaN, scored on a text: `nan` was printed, exit 0, and written into
    scores.json."""
    import torch

    ckpt = torch.load(runs.done[0] / "checkpoints" / "final.ckpt", weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.startswith("model.") and k.endswith("weight"))
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    (tmp / "bare").mkdir()
    torch.save(ckpt, tmp / "bare" / "nan.ckpt")
    (tmp / "text.txt").write_text("Some text to score. " * 20)
    return ["eval", str(tmp / "bare" / "nan.ckpt"), "--bpb", str(tmp / "text.txt")]


def _pipe_to_score(tmp: Path, runs: Runs) -> list[str]:
    run_dir, _ = copy_run(runs.done, tmp)
    os.mkfifo(tmp / "pipe.txt")
    return ["eval", str(run_dir), "--bpb", str(tmp / "pipe.txt")]


def _replaced_weights(tmp: Path, runs: Runs, command: str) -> list[str]:
    import torch

    run_dir, _ = copy_run(runs.done, tmp)
    final = run_dir / "checkpoints" / "final.ckpt"
    ckpt = torch.load(final, weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.startswith("model."))
    ckpt["state_dict"][name] = ckpt["state_dict"][name] + 1e-3
    torch.save(ckpt, final)
    text = tmp / "text.txt"
    text.write_text("Some text to score. " * 20)
    if command == "eval":
        return ["eval", str(run_dir), "--bpb", str(text)]
    return ["generate", str(run_dir), "--prompt", "The", "--max-bytes", "4"]


RUN_FOLDER_CASES = {
    # A resume mixes two runs without a word: bpb 3.84 where the clean run reaches 3.28.
    "--resume with another run's checkpoint (same model, another config)": Case(
        _foreign_checkpoint, ("last.ckpt: checkpoint of another run", "delete it to restart this run"), runs=True),
    "--resume after the corpus changed (same config, other data)": Case(
        _changed_corpus, ("last.ckpt: checkpoint trained on other data", "corpus or tokenizer changed"), runs=True),
    "--resume with last.ckpt missing after a checkpoint was saved": Case(
        lambda t, r: resume(t, r, lambda d: (d / "checkpoints" / "last.ckpt").unlink()),
        ("last.ckpt: missing, but this run saved its checkpoint of step 2 there", "restore the file"), runs=True),
    "--resume with last.ckpt a dangling link": Case(
        _dangling_link, ("last.ckpt: a link to", "other-disk/last.ckpt, which does not exist"), runs=True),
    "train without --resume, last.ckpt a dangling link": Case(
        lambda t, r: _dangling_link(t, r)[:-1], ("which does not exist", "delete the link"), runs=True),
    "--resume with a checkpoint that does not say its run": Case(
        _no_identity, ("does not say which run it belongs to",), runs=True),
    "--resume with an older checkpoint than the run saved": Case(
        _older_checkpoint, ("checkpoint of step 2, but this run saved step 4",), runs=True),
    "eval of a checkpoint whose weights are not the run's": Case(
        lambda t, r: _replaced_weights(t, r, "eval"), ("final.ckpt: weights differ from the run's record",),
        runs=True),
    "generate from a checkpoint whose weights are not the run's": Case(
        lambda t, r: _replaced_weights(t, r, "generate"), ("final.ckpt: weights differ from the run's record",),
        runs=True),
    # A finished run is reported only once shown to be this run's (before: by its folder's name alone).
    "a finished run's folder copied over another run's": Case(
        _copied_over, ("holds a run with a different config",), runs=True),
    "a finished run whose summary is another run's": Case(
        _summary_replaced, ("summary.json: the record of another run (config 0000000000",), runs=True),
    "a finished run whose final weights are not its record's": Case(
        _final_weights_replaced, ("final.ckpt: does not match the run's record (weights",), runs=True),
    # --run-dir takes only an empty or missing folder, or this run's own.
    "--run-dir a folder of the user's own files": Case(
        _foreign_folder, ("mine: holds metrics.csv, which are not this run's records", "nothing there was touched")),
    "--run-dir ''": Case(lambda t: ["train", str(run_config(t)), "--run-dir", ""],
                         ("--run-dir '': an empty path (it would be the current folder)",)),
    "--run-dir a file": Case(
        lambda t: (t / "taken").write_text("x") and ["train", str(run_config(t)), "--run-dir", str(t / "taken")],
        ("taken: not a folder (a file of that name is there)",)),
    "--run-dir under /proc": Case(lambda t: ["train", str(run_config(t)), "--run-dir", "/proc/aunet-run"],
                                  ("/proc/aunet-run: cannot be created",)),
    "--run-dir with a name over 255 bytes": Case(
        lambda t: ["train", str(run_config(t)), "--run-dir", str(t / ("r" * 300))],
        ("a folder name of 300 bytes (at most 255",)),
    # A NaN is never a result.
    "eval of weights holding a NaN": Case(
        _nan_checkpoint, ("nan.ckpt: weights are not finite (NaN or infinity in", "no score is written"), runs=True),
    "eval --bpb of a named pipe": Case(
        _pipe_to_score, ("--bpb", "pipe.txt: not a regular file (a folder, pipe or device)"), runs=True),
    "eval with a batch size of 1e8": Case(
        lambda t, r: ["eval", str(copy_run(r.done, t)[0]), "--bpb", "x.txt", "--batch-size", "1000000000"],
        ("--batch-size 1000000000: needs about", "GiB for the logits of one batch", "at most"), runs=True),
}


def _short_corpus(tmp: Path) -> list[str]:
    (tmp / "short.txt").write_text("Far too short for one sequence of 64 bytes.")
    # One DataLoader worker: before, the training stream found out inside it and its traceback was the message.
    return ["train", str(run_config(tmp, "data: {corpus: short.txt, split: tail, val_fraction: 0.2, num_workers: 1}"
                                          "\n"))]


def _pipe_corpus(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "pipe.txt")  # nothing ever writes to it: reading it would block the run forever
    return ["train", str(run_config(tmp, "data: {corpus: pipe.txt, split: tail}\n"))]


def _cache_is_a_file(tmp: Path) -> Path:
    """A BPE run (its tokenizer is trained into the cache) with AUNET_CACHE_DIR naming a file: the save failed with a
    traceback after the tokenizer was trained."""
    (tmp / "cache-file").write_text("not a folder")
    os.environ["AUNET_CACHE_DIR"] = str(tmp / "cache-file")  # restored by the test (monkeypatch)
    path = tmp / "bpe.yaml"
    path.write_text("model: {preset: tiny-bpe}\ntrain: {max_steps: 2}\n")
    return path


def _wandb(tmp: Path, mode: str) -> list[str]:
    os.environ["WANDB_MODE"] = mode  # restored by the test (monkeypatch), as the two below
    os.environ.pop("WANDB_API_KEY", None)
    os.environ["NETRC"] = str(tmp / "no-netrc")
    return ["train", str(run_config(tmp, "trainer: {loggers: [wandb]}\n"))]


def _runs_table(tmp: Path, text: str) -> Path:
    (tmp / "runs.csv").write_text(text)
    return tmp


NUMBER_AND_FLAG_CASES = {
    # Non-finite numbers: NaN passes every range check (each comparison is false).
    "NaN learning rate in a run config": Case(
        lambda t: ["train", str(run_config(t, train="{max_steps: 2, lr: .nan}"))],
        ("run.yaml: train.lr: expected a finite number, got nan",)),
    "NaN learning rate in --set (as text)": Case(
        lambda t: ["train", "tiny-aunet1", "--set", "train.lr=nan"], ("train.lr: expected a finite number",)),
    "infinite budget": Case(
        lambda t: ["train", str(run_config(t, train="{budget_flops: .inf}"))],
        ("train.budget_flops: expected a finite number, got inf",)),
    "a 1e308 budget (it trained with LR 0)": Case(
        lambda t: ["train", str(run_config(t, train="{budget_flops: 1.0e+308}"))],
        ("train.budget_flops:", "optimizer steps (more than 1e+09)")),
    "absurd max_steps": Case(
        lambda t: ["train", str(run_config(t, train="{max_steps: 1.0e+15}"))],
        ("train.max_steps: 1e+15 optimizer steps",)),
    # Optimizer settings that cannot work: AdamW divides 0 by 0 (before: NaN weights, then val_bpb 0.0000).
    "eps 0": Case(lambda t: ["train", "tiny-aunet2", "--set", "train.budget_flops=null", "--set", "train.max_steps=2",
                             "--set", "train.eps=0"], ("train.eps: must be positive",)),
    "a batch size of 1e8 (a loader worker died of memory, the run hung)": Case(
        lambda t: ["train", "tiny-aunet1", "--set", "train.budget_flops=null", "--set", "train.max_steps=2",
                   "--set", "train.batch_size=100000000"],
        ("train.batch_size: 100000000 sequences per device", "for their logits alone", "at most")),
    "a run name over 255 bytes": Case(
        lambda t: ["train", str(run_config(t, f"name: {'n' * 300}\n"))], ("name: 300 bytes, more than 244",)),
    "--num-nodes 0 (it became 1)": Case(lambda t: ["train", "tiny-aunet1", "--num-nodes", "0"],
                                        ("trainer.num_nodes (--num-nodes): must be at least 1, got 0",)),
    "a cache folder that is a file": Case(
        lambda t: ["train", str(_cache_is_a_file(t)), "--data", "tinyshakespeare", "--set", "data.val_bytes=2048"],
        ("AUNET_CACHE_DIR=", "cache-file: is a file, not a folder")),
    "W&B online without an API key (a half-made run folder was left)": Case(
        lambda t: _wandb(t, "online"), ("WANDB_MODE: online: W&B would log to its server, but no API key",)),
    "an unknown W&B mode": Case(lambda t: _wandb(t, "onlin"), ("WANDB_MODE: 'onlin' is not a W&B mode",)),
    "caps that cannot fit in memory": Case(
        lambda t: ["train", "tiny-aunet1", "--set", "model.caps=[10000000000]", "--set", "train.max_steps=2",
                   "--set", "train.budget_flops=null"],
        ("model: needs about", "GiB before its first step", "lower model.caps")),
    # Trainer flags Lightning refuses with a traceback of its own.
    "--devices 0": Case(lambda t: ["train", "tiny-aunet1", "--accelerator", "cpu", "--devices", "0"],
                        ("trainer.devices (--devices): Lightning refuses devices=0", "give a positive number")),
    "an accelerator this machine lacks": Case(
        lambda t: ["train", "tiny-aunet1", "--accelerator", "mps"],
        ("trainer.accelerator (--accelerator): Lightning refuses accelerator='mps'", "use one this machine has")),
    "an unknown precision": Case(lambda t: ["train", "tiny-aunet1", "--precision", "bf17"],
                                 ("trainer.precision (--precision): Lightning refuses precision='bf17'",)),
    "an unknown strategy": Case(lambda t: ["train", "tiny-aunet1", "--strategy", "warp"],
                                ("trainer.strategy (--strategy): Lightning refuses strategy='warp'",)),
    "more CPU processes than cores": Case(
        lambda t: ["train", "tiny-aunet1", "--accelerator", "cpu", "--devices", str((os.cpu_count() or 1) + 1)],
        ("trainer.devices (--devices):", "CPU processes on")),
    # Corpora.
    "a corpus shorter than one sequence": Case(
        _short_corpus, ("short.txt: the training split holds 37 bytes", "fewer than one sequence of 513")),
    "a named pipe as corpus (it hung the run)": Case(_pipe_corpus, ("pipe.txt: not a regular file",)),
    "a folder given as the config": Case(lambda t: ["train", str(t)], ("not a regular file",)),
    # Sweeps.
    "a budget listed twice in a sweep": Case(
        lambda t: ["sweep", "plan", str(sweep_file(t, budgets=[1.0e9, 3.0e9, 1.0e9])), "--no-probe"],
        ("sweep.yaml: budgets[2]: 1e+09 is listed twice",)),
    "a seed listed twice in a sweep": Case(
        lambda t: ["sweep", "plan", str(sweep_file(t, seeds=[0, 1, 0])), "--no-probe"],
        ("sweep.yaml: seeds[2]: 0 is listed twice",)),
    "two entries of one family and variant in a sweep": Case(
        lambda t: ["sweep", "plan", str(sweep_file(t, families={**MICRO["families"],
                                                                 "aunet2b": {"model": "tiny-aunet2",
                                                                             "family": "aunet2"}})), "--no-probe"],
        ("families.aunet2b: same family 'aunet2' and variant ''",)),
    "sweep run --workers 0 (it became 1)": Case(
        lambda t: ["sweep", "run", str(sweep_file(t)), "--workers", "0"], ("--workers 0: must lie in 1..",)),
    "sweep run --workers 1e6": Case(
        lambda t: ["sweep", "run", str(sweep_file(t)), "--workers", "1000000"],
        ("--workers 1000000: must lie in 1..",)),
    "sweep slurm --partition with a newline (it injected lines into the script)": Case(
        lambda t: ["sweep", "slurm", str(sweep_file(t)), "--partition", "gpu\n#SBATCH --uid=0"],
        ("--partition 'gpu\\n#SBATCH --uid=0': not a partition name",)),
    "sweep slurm --array 1e6": Case(lambda t: ["sweep", "slurm", str(sweep_file(t)), "--array", "1000000"],
                                    ("--array 1000000", "expected 1..1000 tasks",)),
    "a tuning grid of 1e8 trials (memory grew without bound)": Case(
        lambda t: ["sweep", "tune", str(sweep_file(t, tune={"trials": 100000000, "lr": [1.0e-3, 1.0e-2],
                                                            "batch_bytes": 512, "sampler": "grid"}))],
        ("tune.trials: 100000000: must lie in 1..10000",)),
    "eval --tasks '' (it ran every task)": Case(lambda t: ["eval", str(t), "--tasks", ""],
                                                ("--tasks '': no task names",)),
    # generate, eval, analyze flags.
    "generate with a prompt of invalid UTF-8": Case(
        lambda t: ["generate", str(t), "--prompt", "abc\udcff"], ("--prompt: not valid UTF-8 (byte 3)",)),
    "generate with a NaN temperature": Case(
        lambda t: ["generate", str(t), "--prompt", "a", "--temperature", "nan"], ("--temperature nan: must be",)),
    "eval with --batch-size 0": Case(lambda t: ["eval", str(t), "--batch-size", "0"],
                                     ("--batch-size 0: must be at least 1",)),
    "analyze with a negative bootstrap count": Case(
        lambda t: ["analyze", str(t), "--param", "n_boot=-5"], ("--param n_boot=-5: must be at least 1",)),
    "analyze with a parameter no notebook has": Case(
        lambda t: ["analyze", str(t), "--param", "n_bot=50"], ("--param n_bot: no parameter", "did you mean n_boot?")),
    "analyze with 1e8 bootstrap resamples": Case(
        lambda t: ["analyze", str(t), "--param", "n_boot=100000000"], ("--param n_boot=100000000: must be at most",)),
    "analyze with curves drawn 1e9 decades out": Case(
        lambda t: ["analyze", str(t), "--param", "extrapolate_decades=1.0e+9"],
        ("--param extrapolate_decades=1000000000.0: must be at most 6",)),
    "analyze with a gain at a negative compute": Case(
        lambda t: ["analyze", str(t), "--param", "gain_at=[1.0e+12, -5]"],
        ("--param gain_at: element -5 must be a positive finite number",)),
    "analyze with a parameter of the wrong type": Case(
        lambda t: ["analyze", str(t), "--param", "n_boot=lots"], ("--param n_boot='lots': expected int",)),
    "analyze with a gain budget that is not a number (it failed in the notebook, after the others ran)": Case(
        lambda t: ["analyze", str(t), "--param", "gain_at=[9e12, lots]"],
        ("--param gain_at: element 'lots' is not a number",)),
    "analyze with a noise folder that holds no runs.csv": Case(
        lambda t: ["analyze", str(t), "--param", f"noise_from={t / 'nowhere'}"],
        ("--param noise_from=", "no runs.csv in")),
    "analyze of a table without the loss column (it exited 0 with no plots)": Case(
        lambda t: ["analyze", str(_runs_table(t, "family,budget_flops\nbpe,1e9\n"))],
        ("runs.csv: no column val_bpb; every analysis needs them",)),
}


CATALOGUE = {**CONFIG_CASES, **RUN_FOLDER_CASES, **NUMBER_AND_FLAG_CASES}
# Environment variables a case may set for its command.
CASE_ENVIRONMENT = ("AUNET_DATA_DIR", "AUNET_CACHE_DIR", "WANDB_MODE", "WANDB_API_KEY", "NETRC")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, request, case):
    spec = CATALOGUE[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default results folders would land here
    for name in CASE_ENVIRONMENT:  # a case may change these; each is restored after it
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    argv = spec.build(work, request.getfixturevalue("runs")) if spec.runs else spec.build(work)
    before = snapshot(work)
    capsys.readouterr()
    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == spec.code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and len(err) < 600, err[:2000]
    for words in spec.words:
        assert words in err, err
    assert snapshot(work) == before
    if spec.seconds is not None:
        assert seconds < spec.seconds, f"{case}: {seconds:.2f} s"


def test_every_yaml_read_goes_through_the_one_loader():
    """No module but aunet.yaml_loader parses YAML (lm-eval's own task files excepted: they are package data read
    with lm-eval's loader, which knows their !function tags)."""
    import ast

    import aunet

    source = Path(aunet.__file__).parent
    readers = {"safe_load", "safe_load_all", "load", "load_all", "compose", "SafeLoader", "CSafeLoader", "parse"}
    found = []
    for path in sorted(source.rglob("*.py")):
        if path.name == "yaml_loader.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in readers and isinstance(node.value, ast.Name) \
                    and node.value.id == "yaml":
                found.append(f"{path.relative_to(source)}:{node.lineno}: yaml.{node.attr}")
    assert found == []


def test_yaml_merge_keys_and_anchors_of_ordinary_size_still_work(tmp_path):
    """The loader refuses only what cannot be meant: anchors, aliases and merge keys of a real config load."""
    from aunet.yaml_loader import parse_yaml

    text = "base: &b {lr: 1.0e-3, seed: 0}\nrun: {<<: *b, lr: 3.0e-3}\nsizes: &s [64, 24]\nagain: *s\n"
    assert parse_yaml(text, "x.yaml") == {"base": {"lr": 1e-3, "seed": 0}, "run": {"lr": 3e-3, "seed": 0},
                                          "sizes": [64, 24], "again": [64, 24]}
    assert json.loads(json.dumps(parse_yaml(bomb(levels=4, width=9), "x.yaml")))  # 7381 values: fine


def test_a_second_process_cannot_train_into_a_run_folder_in_use(tmp_path, capsys, runs):
    """While another process holds the run folder (here a stand-in that only takes its lock, as ``aunet train``
    does before it writes: an flock through filelock), ``aunet train --resume`` is refused with one line and
    changes nothing; once that process is gone, however it ended, the lock is free and the resume trains."""
    import subprocess
    import sys

    run_dir, config = copy_run(runs.a, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, filelock\n"
                               "with filelock.FileLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)",
         str(run_dir / ".train.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(tmp_path)
        code = main(["train", str(config), "--run-dir", str(run_dir), "--resume"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"error: {run_dir}: another process is training this run" in err, err
        # Without --resume too: the advice was "pass --resume", which would then have been refused as above.
        assert main(["train", str(config), "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert f"error: {run_dir}: another process is training this run" in err and "pass --resume" not in err, err
        assert snapshot(tmp_path) == before
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    assert main(["train", str(config), "--run-dir", str(run_dir), "--resume"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


def test_a_checkpoint_linked_from_another_disk_is_resumed_and_written_through_the_link(tmp_path, runs):
    """The legal form of a moved checkpoint: ``last.ckpt`` a link that resolves. The resume reads it and writes the
    new checkpoints through it: the link stays, the file on the other disk is the new checkpoint."""
    import torch

    run_dir, config = copy_run(runs.a, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    moved = tmp_path / "other-disk" / "last.ckpt"
    moved.parent.mkdir()
    last.rename(moved)
    last.symlink_to(moved)
    assert main(["train", str(config), "--run-dir", str(run_dir), "--resume"]) == 0
    assert last.is_symlink() and last.resolve() == moved.resolve()
    assert torch.load(moved, weights_only=True, map_location="cpu")["global_step"] == 4
    assert not list(moved.parent.glob(".*.tmp")) and not list(last.parent.glob(".*.tmp"))


def test_a_full_disk_mid_checkpoint_leaves_no_temporary_file_and_the_resume_finishes(tmp_path, capsys, monkeypatch,
                                                                                   data_dir):
    """The disk fills while the checkpoint of step 4 is written (half its bytes land, then ENOSPC): one line,
    exit 2, no temporary checkpoint left to keep the disk full, the checkpoint of step 2 intact; once space is
    back, --resume finishes the run with the rows and the result of a run never interrupted."""
    import errno
    import io

    import torch
    from lightning.fabric.plugins.io import torch_io

    from tests.training.helpers import tiny_run

    run = tiny_run(tmp_path, train={"max_steps": 6, "val_every_steps": 2}, data={"val_bytes": 100})
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(run.to_dict()))
    clean = tiny_run(tmp_path / "clean", train={"max_steps": 6, "val_every_steps": 2}, data={"val_bytes": 100})
    assert main(["train", str(_write(tmp_path / "clean.yaml", clean)),
                 "--run-dir", str(tmp_path / "clean-run")]) == 0

    real_save = torch_io._atomic_save
    saves = []

    def disk_fills(checkpoint, filepath):
        saves.append(checkpoint["global_step"])
        if checkpoint["global_step"] < 4:
            return real_save(checkpoint, filepath)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with open(filepath, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    run_dir = tmp_path / "run"
    monkeypatch.setattr(torch_io, "_atomic_save", disk_fills)
    capsys.readouterr()
    assert main(["train", str(config), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {run_dir / 'checkpoints' / 'last.ckpt'}: cannot write (No space left on device); "
                          "free disk space, then run the same command with --resume"), err
    assert saves == [2, 4]
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".") and p.name != ".train.lock"]
    assert leftovers == []
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2

    monkeypatch.setattr(torch_io, "_atomic_save", real_save)  # space is back
    assert main(["train", str(config), "--run-dir", str(run_dir), "--resume"]) == 0
    done, reference = (json.loads((d / "summary.json").read_text()) for d in (run_dir, tmp_path / "clean-run"))
    assert done["steps"] == reference["steps"] == 6
    assert done["weights_sha256"] == reference["weights_sha256"] and done["val_bpb"] == reference["val_bpb"]
    steps = [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    clean_steps = [line.split(",")[0] for line in (tmp_path / "clean-run" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == clean_steps


def _write(path: Path, run) -> Path:
    path.write_text(json.dumps(run.to_dict()))
    return path


def test_a_full_disk_at_a_record_write_keeps_the_old_record_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Every record (summary, metrics, tables, plans) goes through aunet.io: a write that fails leaves the old
    file whole, no temporary file, and one line naming the file."""
    import errno

    from aunet import io as aunet_io
    from aunet.errors import WriteError

    target = tmp_path / "summary.json"
    aunet_io.atomic_write_json(target, {"val_bpb": 1.5})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(aunet_io.os, "fsync", full)
    with pytest.raises(WriteError) as err:
        aunet_io.atomic_write_json(target, {"val_bpb": 2.5})
    assert str(err.value) == f"{target}: cannot write (No space left on device); free disk space, then run the " \
                             "command again"
    assert json.loads(target.read_text()) == {"val_bpb": 1.5} and sorted(tmp_path.iterdir()) == [target]


def test_a_full_disk_anywhere_else_is_one_line(monkeypatch, capsys):
    """A write outside the record helpers (a library's own file, a plot) that finds the disk full is still one
    line and exit 2; another OSError keeps its traceback (a bug to report)."""
    import errno

    from aunet.cli import presets_cmd

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/results/plots/scaling.png")

    monkeypatch.setattr(presets_cmd, "run", full)
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == ("error: /results/plots/scaling.png: cannot write (No space left on device); "
                                       "free disk space, then run the command again\n")

    def broken(args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(presets_cmd, "run", broken)
    with pytest.raises(OSError):
        main(["presets"])


def test_a_run_trained_into_by_another_process_while_the_data_was_prepared_is_not_overwritten(
        tmp_path, capsys, monkeypatch, runs):
    """The folder is read before the corpus (which can take minutes); another process that trains into it in that
    time is noticed once the lock is taken: one line, and the other process's records stay as it left them."""
    import shutil

    from aunet.training.datamodule import CorpusDataModule

    folder, config = runs.a
    (tmp_path / "run.yaml").write_text(json.dumps(config))
    run_dir = tmp_path / "run"
    prepare = CorpusDataModule.prepare_data

    def meanwhile(self):
        shutil.copytree(folder, run_dir)  # the other process: it trained two steps and saved its checkpoint
        return prepare(self)

    monkeypatch.setattr(CorpusDataModule, "prepare_data", meanwhile)
    assert main(["train", str(tmp_path / "run.yaml"), "--run-dir", str(run_dir), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run_dir}: another process wrote to this run while its data was prepared" in err
    assert snapshot(run_dir) == snapshot(folder)  # the lock file included: both runs held one


BOMB_COMMANDS = {
    "run config": lambda t: ["train", str(run_config(t, train=f"{{max_steps: 2, lr: {BOMB}}}"))],
    "--set": lambda t: ["train", "tiny-aunet1", "--set", f"train.lr={BOMB}"],
    "sweep plan": lambda t: ["sweep", "plan", str(sweep_file(t, f"description: {BOMB}\n"))],
    "sweep run": lambda t: ["sweep", "run", str(sweep_file(t, f"description: {BOMB}\n"))],
    "sweep tune": lambda t: ["sweep", "tune", str(sweep_file(t, f"description: {BOMB}\n"))],
}


@pytest.mark.parametrize("where", sorted(BOMB_COMMANDS))
def test_a_bad_config_is_refused_before_torch_is_imported(where, tmp_path):
    """The timed cases above run in this process, where torch is loaded already; a fresh process shows whether a
    config error waits for the seconds torch takes to import (it must not: the config is read first)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom aunet.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    code = e.code\nprint('torch' in sys.modules, code, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", probe, *BOMB_COMMANDS[where](tmp_path)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert "aliases expand to" in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == "False 2", out.stderr[-2000:]


def test_a_crash_of_an_evaluation_is_one_line_with_its_traceback_kept(tmp_path, capsys, monkeypatch, runs):
    """Whatever escapes an evaluation (an I/O or CUDA error, a bug) ends it with one line naming the error and the
    file that keeps the traceback, exit 1; nothing is written into the run folder."""
    from aunet.evaluation import evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (test double)\nsecond line")

    monkeypatch.setattr(evaluate, "evaluate_loaded", broken)
    run_dir, _ = copy_run(runs.done, tmp_path)
    before = snapshot(run_dir)
    assert main(["eval", str(run_dir), "--bpb", str(tmp_path / "run.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: evaluation of {run_dir} failed: RuntimeError: CUDA "
                                                    "error: an illegal memory access"), err
    traceback_file = Path(err.rsplit("the traceback is in ", 1)[1].strip())
    assert "Traceback" in traceback_file.read_text() and "second line" in traceback_file.read_text()
    traceback_file.unlink()
    assert snapshot(run_dir) == before
