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
            else:
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
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

    build: Callable[[Path], list[str]]
    words: tuple[str, ...]
    code: int = 2
    seconds: float | None = None


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
}


CATALOGUE = {**CONFIG_CASES}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, case):
    spec = CATALOGUE[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default results folders would land here
    argv = spec.build(work)
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
