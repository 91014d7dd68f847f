"""Hypothesis strategies for byte strings that stress the split rules."""

from __future__ import annotations

from hypothesis import strategies as st

# Pieces chosen for their classes: Latin words, digits of several scripts, punctuation and symbols (some multi-byte),
# whitespace of several kinds (including U+00A0, U+3000, CR), CJK, Thai, emoji with modifiers, combining marks.
PIECES = [
    "the", "cat", "a", "é", "naïve", "e\u0301", "ß", "Ω", "Привет", "مرحبا", "中文", "日本語", "ひらがな", "ไทย",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1", "12", "12345", "٣٤٥", "３４", "१२", ".", "...", "?", "!?", "—", "“", "”", "'",
    "$", "+", "€", "©", "(", ")", "-", "_", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\u00a0", "\u3000",
    "\u2028", "?\n", ".\n\n", "\x00", "\x1f",
]
RAW = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x80", b"\xed\xa0\x80", b"\xf0\x9f",
       b"\xf4\x90\x80\x80", b"\xe0\x80\x80"]

piece = st.one_of(
    st.sampled_from(PIECES).map(lambda s: s.encode("utf-8")),
    st.sampled_from(RAW),
    st.text(max_size=4).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=3),
)

byte_strings = st.lists(piece, max_size=40).map(b"".join)
valid_texts = st.lists(st.sampled_from(PIECES), max_size=40).map(lambda xs: "".join(xs).encode("utf-8"))

# Scripts without word spaces: random Han (BMP and the 4-byte Extension B), kana (with the prolonged sound mark and
# iteration marks), halfwidth katakana, Thai letters, vowel and tone marks, Thai digits and punctuation; CJK
# punctuation, full-width space and digits; mixed with Latin words, spaces, newlines and invalid or cut-off bytes
# (a CJK character missing its last byte), so that runs start, stop and restart in every way.
CJK_CHARS = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),   # CJK unified ideographs
    st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),  # Extension B: 4-byte UTF-8
    st.characters(min_codepoint=0x3040, max_codepoint=0x30FF),   # Hiragana and Katakana (incl. ー ゝ ヽ ・ ゛)
    st.characters(min_codepoint=0xFF61, max_codepoint=0xFF9F),   # halfwidth katakana and punctuation
    st.characters(min_codepoint=0x0E00, max_codepoint=0x0E7F),   # Thai: letters, marks, digits, ฯ ๆ ๏
    st.characters(min_codepoint=0x3000, max_codepoint=0x303F),   # CJK symbols and punctuation, U+3000 space, 々 〇
    st.sampled_from("々〇ー。、「」（）！？０１２３４５"),
)
CJK_PIECES = [" ", "  ", "\n", "\u3000", "abc", "x", "12", ".", "?\n", "中文", "日本語", "ไทย", "ภาษาไทย",
              "ค่ะ", "コーヒー", "ひらがな", "漢字かな交じり"]
CJK_RAW = [b"\xe4\xb8", b"\xe4", b"\xf0\xa0\x80", b"\xe0\xb8", b"\xff", b"\x80", b"\xed\xa0\x80"]

cjk_piece = st.one_of(
    st.text(CJK_CHARS, min_size=1, max_size=6).map(lambda s: s.encode("utf-8")),
    st.sampled_from(CJK_PIECES).map(lambda s: s.encode("utf-8")),
    st.sampled_from(CJK_RAW),
    st.binary(max_size=2),
)
cjk_byte_strings = st.lists(cjk_piece, max_size=30).map(b"".join)
