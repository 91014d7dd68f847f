"""`aunet data list` and `aunet data prepare`: output formats and one-line errors with exit code 2."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from aunet.cli import main
from aunet.data.registry import CORPORA


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_and_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUNET_DATA_DIR", str(tmp_path))
    code, out, _ = run_cli(capsys, "data", "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["name"] for r in rows] == list(CORPORA)
    assert not any(r["available"] for r in rows) and all(r["path"].startswith(str(tmp_path)) for r in rows)
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0 and out.splitlines()[0].split() == ["name", "available", "size", "path", "description"]
    assert len(out.splitlines()) == len(CORPORA) + 1


def test_prepare_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(capsys, "data", "prepare", "nosuch")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: unknown corpus 'nosuch'")

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    code, out, err = run_cli(capsys, "data", "prepare", "tinyshakespeare", "--dest", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "download failed (no network)" in err


def test_prepare_prints_the_path_of_a_present_corpus(data_dir, capsys):
    code, out, _ = run_cli(capsys, "data", "prepare", "tinyshakespeare")
    assert code == 0 and Path(out.strip()).resolve() == data_dir / "corpora" / "tinyshakespeare" / "input.txt"
