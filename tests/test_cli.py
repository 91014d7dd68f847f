"""The `aunet` command: `flops` and `presets`, output formats and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aunet.cli import main
from aunet.presets import list_presets


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_flops_json_on_paper_presets(capsys):
    code, out, _ = run_cli(capsys, "flops", "paper-aunet2-1b", "--json")
    report = json.loads(out)
    assert code == 0 and report["unit"] == "byte"
    assert {"params", "non_embedding_params", "flops_per_unit", "unit", "head_share"} <= report.keys()
    assert abs(report["flops_per_unit"] - 1.8e9) / 1.8e9 < 0.05
    code, out, _ = run_cli(capsys, "flops", "ladder/bpe-1e19", "--json")
    report = json.loads(out)
    assert report["unit"] == "token" and abs(report["flops_per_unit"] - 1.9e9) / 1.9e9 < 0.05


def test_flops_table(capsys):
    code, out, _ = run_cli(capsys, "flops", "paper-aunet2-1b")
    assert code == 0
    assert "FLOPs per byte   1.743e+09" in out and "stage" in out and "head" in out


def test_flops_on_a_user_file(tmp_path, capsys):
    cfg = tmp_path / "model.yaml"
    cfg.write_text("model:\n  family: bpe\n  dim: 64\n  layers: 2\n  head_dim: 32\n  vocab_size: 1000\n"
                   "  seq_len: 128\n")
    code, out, _ = run_cli(capsys, "flops", str(cfg), "--json")
    assert code == 0 and json.loads(out)["unit"] == "token"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model:\n  family: aunet\n  dims: [64, 128]\n  layers: [1, 1]\n  head_dims: [32, 32]\n  caps: [64, 128]\n"
         "  splits: [word@1]\n", "model.caps[1]: 128 exceeds caps[0]=64"),
        ("model:\n  family: aunet\n  dims: [64]\n  layers: [1]\n  head_dims: [32]\n  capz: [64]\n",
         "model.capz: unknown key; did you mean 'caps'?"),
        ("model: [1, 2\n", "not valid YAML"),
        ("other: 1\n", "model: missing section"),
        ("model:\n  family: aunet\n  dims: [64, 64]\n  layers: [1, 1]\n  head_dims: [32, 32]\n  caps: [64, 32]\n"
         "  splits: [wrod@1]\n", "model.splits[0]: unknown split rule 'wrod@1' (did you mean 'word'?)"),
    ],
)
def test_bad_config_files_give_one_line_and_exit_2(tmp_path, capsys, text, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, out, err = run_cli(capsys, "flops", str(cfg))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {cfg}: ") and expected in err


def test_unknown_preset_suggests_close_names(capsys):
    code, _, err = run_cli(capsys, "flops", "paper-aunet2-1B")
    assert code == 2 and "did you mean paper-aunet2-1b" in err and err.count("\n") == 1


def test_presets_listing(capsys):
    code, out, _ = run_cli(capsys, "presets", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["name"] for r in rows} == set(list_presets())
    assert all(r["description"] for r in rows)


def test_console_script_help_and_exit_code():
    proc = subprocess.run([sys.executable, "-m", "aunet", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "flops" in proc.stdout and "presets" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "aunet", "flops", "no-such-model"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
