from hypothesis import given

from aunet.splitting import decode_units
from aunet.splitting.charclass import DENSE, DIGIT, NEWLINE, OTHER, PUNCT, SPACE
from tests.splitting.reference import char_spans
from tests.splitting.strategies import byte_strings


@given(byte_strings)
def test_units_match_python_decoder(data):
    units = decode_units(data)
    _, starts, ends, valid = char_spans(data)
    assert units.start.tolist() == starts
    assert units.end.tolist() == ends
    assert units.valid.tolist() == valid
    assert all(c == OTHER for c, v in zip(units.cls.tolist(), valid) if not v)


def test_classes_of_sample_characters():
    text = "a 1.\n٣—\u3000😀中"
    units = decode_units(text.encode())
    assert units.cls.tolist() == [OTHER, SPACE, DIGIT, PUNCT, NEWLINE, DIGIT, PUNCT, SPACE, PUNCT, DENSE]


def test_truncated_character_is_invalid_until_complete():
    units = decode_units("€".encode()[:2])
    assert units.valid.tolist() == [False, False]
    assert decode_units("€".encode()).valid.tolist() == [True]


def test_empty():
    assert len(decode_units(b"")) == 0


def test_dense_class_of_scripts_without_spaces():
    # Han, kana (with the prolonged sound mark of script Common), halfwidth katakana and Thai letters and marks are
    # DENSE; their digits, punctuation and spaces keep those classes; Hangul (written with spaces) does not.
    text = "中ひカーｶ々ไั๑。、\u3000한"
    units = decode_units(text.encode())
    assert units.cls.tolist() == [DENSE] * 8 + [DIGIT, PUNCT, PUNCT, SPACE, OTHER]
