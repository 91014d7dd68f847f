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
