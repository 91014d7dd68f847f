"""Safety: checkpoints load with weights_only=True, YAML only through safe_load, no config value is ever evaluated as
code, and results paths cannot escape the results folder. See docs/reliability.md."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import aunet
from aunet.cli import main
from aunet.errors import ConfigError
from aunet.sweeps.spec import load_sweep
from aunet.training.config import run_config_from_dict
from tests.sweeps.helpers import write_sweep
from tests.threads import single_thread
from tests.training.helpers import TINY_AUNET, tiny_run

SOURCE = Path(aunet.__file__).parent


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return "?"


def test_no_unsafe_deserialisation_or_evaluation_in_the_source():
    """Every torch.load passes weights_only=True; YAML is read with safe_load only; no eval/exec/pickle, no shell."""
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in calls(tree):
            name, where = dotted(node.func), f"{path.relative_to(SOURCE)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load"):
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all",
                        "eval", "exec", "pickle.load", "pickle.loads", "marshal.loads", "compile"):
                problems.append(f"{where}: {name}")
            if isinstance(keywords.get("shell"), ast.Constant) and keywords["shell"].value is True:
                problems.append(f"{where}: shell=True")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("Loader", "UnsafeLoader", "FullLoader", "CLoader") \
                    and dotted(node.value) == "yaml":
                problems.append(f"{path.relative_to(SOURCE)}:{node.lineno}: yaml.{node.attr}")
    assert problems == []


class Payload:
    """A pickle that would create a folder when unpickled by a loader that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def evil_checkpoint(path: Path, marker: Path, good: dict) -> Path:
    torch.save({**good, "callbacks": Payload(marker)}, path)
    return path


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, data_dir):
    """A run stopped after its checkpoint of step 2: its folder and config."""
    from aunet.training.run import train
    from tests.training.test_run import Crash, CrashAt

    tmp = tmp_path_factory.mktemp("unfinished")
    run = tiny_run(tmp, train={"max_steps": 4, "val_every_steps": 2}, data={"val_bytes": 100})
    with single_thread(), pytest.raises(Crash):  # module fixtures start before the one_thread fixture
        train(run, callbacks=[CrashAt(step=2)])
    return tmp / "runs" / run.run_id(), run.to_dict()


def test_a_checkpoint_that_runs_code_is_refused_and_the_code_never_runs(tmp_path, unfinished, capsys):
    source, config = unfinished
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    marker = tmp_path / "PWNED"
    evil_checkpoint(last, marker, torch.load(last, weights_only=True))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(config))
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{last}: cannot read checkpoint (UnpicklingError)" in err, err
    assert main(["eval", str(last), "--bpb", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{last}: cannot read checkpoint (UnpicklingError" in err, err
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    ["model: !!python/object/apply:os.mkdir [PWNED]\n", "model: {preset: tiny-aunet1}\nname: !!python/name:os.mkdir\n"],
)
def test_yaml_tags_that_run_code_are_refused_for_run_and_sweep_files(tmp_path, capsys, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    for command in (["train", str(path)], ["sweep", "plan", str(path)], ["flops", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {path}: not valid YAML"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml"]


@pytest.mark.parametrize(
    "key, value, message",
    [("train.lr", "__import__('os').mkdir('PWNED')", "train.lr: expected a number, got \"__import__("),
     ("model.splits", "[\"lambda b: os.mkdir('PWNED')\"]", "model.splits[0]: unknown split rule"),
     ("data.val_bytes", "${HOME}", "data.val_bytes: expected an integer, got '${HOME}'"),
     ("train.seed", "{'a': 1}", "train.seed: expected an integer, got {'a': 1}")],
)
def test_config_values_are_data_never_code(tmp_path, capsys, monkeypatch, key, value, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny-aunet2", "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "/etc/x", "x/../../y", ".hidden", "a\\b", "run name", ""])
def test_a_run_name_cannot_leave_the_results_folder(name):
    with pytest.raises(ConfigError) as err:
        run_config_from_dict({"name": name, "model": TINY_AUNET, "train": {"max_steps": 1}})
    assert err.value.key == "name" and "\n" not in str(err.value)


def test_every_run_folder_is_a_child_of_the_results_folder(tmp_path):
    run = run_config_from_dict({"name": "ok-name_1.0", "model": TINY_AUNET,
                                "train": {"max_steps": 1, "results_dir": str(tmp_path / "runs")}})
    folder = (Path(run.train.results_dir) / run.run_id()).resolve()
    assert folder.parent == (tmp_path / "runs").resolve() and folder.name.startswith("ok-name_1.0-")
    # A file or preset name is only a default: it is made folder-safe, never refused.
    assert run_config_from_dict({"model": TINY_AUNET, "train": {"max_steps": 1}}, default_name="my run").name == \
        "my-run"


@pytest.mark.parametrize(
    "families, key",
    [({"../../etc": {"model": "tiny-aunet1"}}, "families.../../etc"),
     ({"aunet": {"model": "tiny-aunet1", "family": "a/b"}}, "families.aunet.family")],
)
def test_a_sweep_family_cannot_name_a_folder_outside_the_results(tmp_path, capsys, families, key):
    path = write_sweep(tmp_path, families=families)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert err.value.key == key and "cannot name run folders" in err.value.message
    assert main(["sweep", "plan", str(path), "--no-probe"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: {key}: ")
