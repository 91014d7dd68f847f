import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aunet.errors import ConfigError
from aunet.splitting import RULES, compute_levels, parse_rule, register_rule, rule_selections
from tests.splitting.reference import char_spans, reference_levels
from tests.splitting.strategies import byte_strings, cjk_byte_strings, valid_texts

RULE_SETS = [
    ["word@1"],
    ["word@1", "word@2"],
    ["word@1", "word@2", "word@4"],
    ["word@3"],
    ["stride@1"],
    ["stride@4", "stride@8"],
    ["word@1", "stride@3"],  # not nested on their own: levels must still nest
    ["cjk@1"],
    ["cjk@2"],
    ["cjk@1", "cjk@2", "cjk@4"],
    ["cjk@1", "word@2"],
    ["cjk@3"],
]
CJK_RULE_SETS = [r for r in RULE_SETS if any(x.startswith("cjk") for x in r)]


def render(text: str, rules: list[str]) -> str:
    """Each character with the level of its last byte (multi-byte characters pool there)."""
    levels = compute_levels(text.encode(), rules)
    last_bytes = np.cumsum([len(c.encode()) for c in text]) - 1
    shown = text.replace(" ", "_").replace("\n", "¶")
    return " ".join(c + (f":{levels[e]}" if levels[e] else "") for c, e in zip(shown, last_bytes))


def test_paper_worked_example():
    # aunet-paper-notes §3.3, strategies word1 + word2 + word4.
    got = render("The cat sat on the mat. It was 12345 days, ok?\n", ["word@1", "word@2", "word@4"])
    assert got == (
        "T h e _:1 c a t _:2 s a t _:1 o n _:3 t h e _:1 m a t .:3 _:2 I t _:1 w a s _:3 1:3 2 3 4:3 5 _:1 "
        "d a y s ,:3 _:2 o k ?:3 ¶:1"
    )


def test_multibyte_punctuation_pools_on_last_byte():
    data = "a—b".encode()  # em dash is 3 bytes
    assert compute_levels(data, ["word@1"]).tolist() == [0, 0, 0, 1, 0]


def test_whitespace_runs_restart_word_groups_and_newline_rules():
    assert render("a b  c d e ", ["word@2"]) == "a _ b _:1 _ c _ d _:1 e _"
    # newline after punctuation belongs to it; the first newline of a whitespace run is selected at every level
    assert render("ok?\n\nyes  \n\nno", ["word@1", "word@2"]) == "o k ?:2 ¶:1 ¶ y e s _:1 _ ¶:2 ¶ n o"


# Every rule set on any bytes; the cjk rule sets again on text dense in Han, kana and Thai, where they differ.
TEXT_CASES = [(rules, byte_strings) for rules in RULE_SETS] + [(rules, cjk_byte_strings) for rules in CJK_RULE_SETS]
TEXT_IDS = ["+".join(r) for r in RULE_SETS] + ["+".join(r) + " on cjk text" for r in CJK_RULE_SETS]


@pytest.mark.parametrize(("rules", "texts"), TEXT_CASES, ids=TEXT_IDS)
@given(draw=st.data())
def test_matches_regex_reference(rules, texts, draw):
    data = draw.draw(texts)
    assert compute_levels(data, rules).tolist() == reference_levels(data, rules).tolist()


@pytest.mark.parametrize(("rules", "texts"), TEXT_CASES, ids=TEXT_IDS)
@given(draw=st.data())
def test_append_stable(rules, texts, draw):
    data = draw.draw(texts)
    full = compute_levels(data, rules)
    for cut in range(len(data) + 1):
        assert compute_levels(data[:cut], rules).tolist() == full[:cut].tolist(), cut


@pytest.mark.parametrize(("rules", "texts"), TEXT_CASES, ids=TEXT_IDS)
@given(draw=st.data())
def test_boundaries_only_on_last_byte_of_a_valid_character(rules, texts, draw):
    data = draw.draw(texts)
    _, _, ends, valid = char_spans(data)
    allowed = {e for e, v in zip(ends, valid) if v}
    assert set(np.flatnonzero(compute_levels(data, rules)).tolist()) <= allowed


@given(data=st.one_of(cjk_byte_strings, byte_strings))
def test_cjk_rules_nest_on_their_own_and_contain_word(data):
    c1, c2, c4, w1, w2 = rule_selections(data, ["cjk@1", "cjk@2", "cjk@4", "word@1", "word@2"])
    assert not (c2 & ~c1).any() and not (c4 & ~c2).any()
    assert not (w1 & ~c1).any() and not (w2 & ~c2).any()


@given(data=byte_strings.filter(lambda d: not any(0x80 <= b for b in d)))
def test_cjk_equals_word_on_text_without_dense_characters(data):
    for k in (1, 2, 4):
        assert np.array_equal(*rule_selections(data, [f"cjk@{k}", f"word@{k}"]))


def test_cjk_worked_examples():
    # Every Han / kana / Thai character is a word at cjk@1; cjk@2 takes every second one of a run, counted from
    # the run's start; punctuation, digits and spaces keep the word rule's meaning; "ー" belongs to katakana.
    assert render("中文字符，测试。", ["cjk@1", "cjk@2"]) == "中:1 文:2 字:1 符:2 ，:2 测:1 试:2 。:2"
    assert render("コーヒーを飲む", ["cjk@1", "cjk@2"]) == "コ:1 ー:2 ヒ:1 ー:2 を:1 飲:2 む:1"
    assert render("ไทย ๑๒ ab c", ["cjk@2"]) == "ไ ท:1 ย _ ๑:1 ๒ _:1 a b _ c"
    assert render("漢字 kanji ok", ["word@1"]) == "漢 字 _:1 k a n j i _:1 o k"


@given(data=byte_strings)
def test_word_rules_nest_on_their_own(data):
    w1, w2, w4 = rule_selections(data, ["word@1", "word@2", "word@4"])
    assert not (w2 & ~w1).any() and not (w4 & ~w2).any()
    s4, s8 = rule_selections(data, ["stride@4", "stride@8"])
    assert not (s8 & ~s4).any()


def test_real_cjk_and_thai_text_append_stable_and_compression(data_dir):
    """On real Chinese, Japanese and Thai sentences cjk@1 pools about every character, word@1 almost nothing."""
    import json

    pud = data_dir / "corpora" / "multilingual" / "ud_pud"
    for lang in ("zh", "ja", "th"):
        with (pud / f"{lang}.jsonl").open(encoding="utf-8") as handle:
            text = "\n".join(json.loads(line)["text"] for _, line in zip(range(200), handle)).encode()
        full = compute_levels(text, ["cjk@1", "cjk@2"])
        rng = np.random.default_rng(0)
        for cut in rng.integers(0, len(text), size=30):  # cuts land inside characters too
            assert np.array_equal(compute_levels(text[:cut], ["cjk@1", "cjk@2"]), full[:cut])
        word = len(text) / compute_levels(text, ["word@1"]).astype(bool).sum()
        cjk1, cjk2 = (len(text) / (full > i).sum() for i in range(2))
        assert 2.5 < cjk1 < 3.2 < cjk2 < 6.5 < word, (lang, cjk1, cjk2, word)


@given(data=byte_strings)
def test_levels_nest(data):
    levels = compute_levels(data, ["word@1", "stride@3"])
    w1, s3 = rule_selections(data, ["word@1", "stride@3"])
    assert np.array_equal(levels >= 1, w1) and np.array_equal(levels >= 2, w1 & s3)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    levels = compute_levels(data, ["word@1", "word@2", "word@4"])
    assert levels.shape == (len(data),) and levels.dtype == np.uint8 and levels.max(initial=0) <= 3


@given(valid_texts)
def test_stride_on_ascii_is_every_kth_byte(data):
    ascii_only = bytes(b for b in data if b < 0x80)
    levels = compute_levels(ascii_only, ["stride@5"])
    assert np.flatnonzero(levels).tolist() == list(range(4, len(ascii_only), 5))


def test_real_prose_append_stable_and_compression(english_text):
    rules = ["word@1", "word@2", "word@4"]
    full = compute_levels(english_text, rules)
    rng = np.random.default_rng(0)
    for cut in rng.integers(0, len(english_text), size=50):
        assert np.array_equal(compute_levels(english_text[:cut], rules), full[:cut])
    bytes_per_unit = [len(english_text) / (full > i).sum() for i in range(3)]
    # Words, word pairs, 4-word groups: each deeper stage is coarser.
    assert 3 < bytes_per_unit[0] < bytes_per_unit[1] < bytes_per_unit[2] < 20


def test_registry_accepts_user_rules():
    def every_space(units, arg):
        return units.cls == 1

    try:
        register_rule("test-spaces", every_space, description="each space")
        assert compute_levels(b"a b c", ["test-spaces"]).tolist() == [0, 1, 0, 1, 0]
        with pytest.raises(ValueError, match="already registered"):
            register_rule("test-spaces", every_space)
    finally:
        RULES.pop("test-spaces", None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("wrod@1", "did you mean 'word'"),
        ("word", "needs a positive integer"),
        ("word@0", "needs a positive integer"),
        ("word@x", "needs a positive integer"),
        ("bogus", "unknown split rule"),
    ],
)
def test_bad_rule_names(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_rule(spec)
    with pytest.raises(ConfigError):
        compute_levels(b"abc", [spec])
