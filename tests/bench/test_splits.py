"""The split-rule measurement CLI: bytes per segment by hand, and the real texts' numbers in range."""

from __future__ import annotations

import json

import pytest

from aunet.bench.splits import TextSet, bytes_per_segment, format_report, main, measure


def test_bytes_per_segment_by_hand():
    # word@1 selects the 3 spaces; cjk@1 also each of the 4 Han characters (3 bytes each).
    assert bytes_per_segment([b"a b c "], "word@1") == 2.0
    text = "中文 字符 ".encode()
    assert bytes_per_segment([text], "word@1") == len(text) / 2
    assert bytes_per_segment([text], "cjk@1") == len(text) / 6
    assert bytes_per_segment([text, b"x y "], "cjk@1") == (len(text) + 4) / 8  # documents split one by one


def test_measure_and_report_on_small_texts():
    sets = [TextSet("en", "inline", [b"the cat sat on the mat. " * 50]),
            TextSet("zh", "inline", ["这是一个测试，我们看看。".encode() * 50])]
    result = measure(sets, ["word@1", "cjk@1"], [["word@1"], ["cjk@1", "cjk@2"]], repeats=1)
    assert result["bytes_per_segment"]["zh"]["cjk@1"] == pytest.approx(3.0, abs=0.01)
    assert result["bytes_per_segment"]["en"]["cjk@1"] == result["bytes_per_segment"]["en"]["word@1"]
    assert len(result["speed"]) == 4 and all(r["mb_per_s_median"] > 0 for r in result["speed"])
    report = format_report(result)
    assert "| zh | inline | 1 |" in report and "cjk@1,cjk@2" in report


def test_cli_on_the_real_texts(data_dir, capsys):
    assert main(["--max-bytes", "30000", "--repeats", "1", "--json", "--no-pin",
                 "--speed-rules", "cjk@1"]) == 0
    result = json.loads(capsys.readouterr().out)
    per_text = result["bytes_per_segment"]
    for lang in ("zh", "ja", "th_pud", "zh_pud", "ja_pud"):
        assert 2.7 < per_text[lang]["cjk@1"] < 3.3 < per_text[lang]["cjk@2"] < per_text[lang]["word@1"], lang
    assert per_text["en"]["cjk@1"] == per_text["en"]["word@1"]
    assert main(["--rules", "nope@1", "--no-pin"]) == 2
    assert "unknown split rule 'nope@1'" in capsys.readouterr().err
