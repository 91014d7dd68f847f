"""Evaluation suites: fixed sets of texts scored in bits per byte, under namespaced keys of ``eval/scores.json``.

``multilingual`` (``aunet eval RUN --suite multilingual``) writes ``multilingual.bpb.<name>`` for:

* ``en``, ``de``, ``fr``, ``es``, ``ru``, ``ar``, ``hi``, ``ko``, ``zh``, ``ja``, ``th``: the 1,000 sentences of the
  parallel PUD treebanks (``corpora/multilingual/ud_pud/parallel.jsonl``), the same news and Wikipedia content in
  every language (Chinese in Traditional characters), so languages and model families compare on equal content;
* ``zh_gsd``, ``ja_gsd``: the test sentences of the UD GSD treebanks (Simplified Chinese and Japanese Wikipedia),
  which no corpus of the data directory contains;
* ``zh_cmrc2018``, ``ja_wikipedia_kyoto``, ``gutenberg_en``: the first ``sample_bytes`` (64 KiB) of the held-out
  documents of those named corpora (the last one cut at a character boundary): the validation side of each
  corpus's own default split, i.e. text a model trained on that corpus alone (``data.corpus: zh_cmrc2018``) never
  saw. For ``gutenberg_en`` that is Peter Pan (``pg16``), which ``mixed_en_zh_ja`` does not contain either: in-domain
  English for models trained on books, where the PUD news sentences are out of domain. A model trained on a corpus
  that contains the Chinese or Japanese documents under other keys (``mixed_en_zh_ja``) may have seen them;
  ``zh_gsd`` and ``ja_gsd`` are held out from everything.

Every sentence or document is scored on its own from BOS (rolling windows beyond the training length), and bits
per byte are ``-sum(log p) / (UTF-8 bytes * ln 2)`` over all of a language's text, exactly as ``--bpb`` computes
them (:func:`aunet.evaluation.scoring.bits_per_byte_of_texts`). UTF-8 takes 1 byte per Latin letter, 2 per
Cyrillic or Arabic one and 3 per Han, kana, Thai, Devanagari or Hangul character, so bits per byte compare families
within a language; across languages, the bits of the same sentences (bpb times bytes) are the fair measure.
``limit`` keeps the first ``limit`` sentences or documents of each text (the same sentences in every language).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from aunet.data.registry import resolve_corpus
from aunet.data.split import CorpusSplit, SplitSpec
from aunet.evaluation.errors import EvalError
from aunet.evaluation.scoring import bits_per_byte_of_texts
from aunet.paths import data_dir

if TYPE_CHECKING:
    from aunet.evaluation.checkpoint import LoadedModel

SUITES = ("multilingual",)
PUD_PARALLEL = "corpora/multilingual/ud_pud/parallel.jsonl"
PUD_LANGUAGES = ("en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja", "th")
GSD_FILES = {"zh_gsd": "corpora/multilingual/ud_gsd_zh_ja/zh_test.jsonl",
             "ja_gsd": "corpora/multilingual/ud_gsd_zh_ja/ja_test.jsonl"}
HELD_OUT_CORPORA = ("zh_cmrc2018", "ja_wikipedia_kyoto", "gutenberg_en")
DEFAULT_SAMPLE_BYTES = 65_536
PREFIX = {"multilingual": "multilingual.bpb."}


def _data_file(relative: str) -> Path:
    path = data_dir() / relative  # type: ignore[operator]
    if not path.is_file():
        raise EvalError(f"{path}: missing from the data directory (AUNET_DATA_DIR); the multilingual suite reads it")
    return path


def _read_jsonl(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise EvalError(f"{path}:{n}: not valid JSON") from None
    return rows


def held_out_documents(corpus: str, max_bytes: int, limit: int | None = None) -> list[str]:
    """The first ``max_bytes`` bytes of the validation-side documents of a named corpus under its default split
    (at most ``limit`` documents; the last one cut at a character boundary)."""

    source, method = resolve_corpus(corpus)
    docs: list[str] = []
    total = 0
    for doc in CorpusSplit(source, SplitSpec(method=method)).val_documents():
        if total >= max_bytes or (limit is not None and len(docs) >= limit):
            break
        data = doc.data[: max_bytes - total]
        text = data.decode("utf-8", errors="ignore") if len(data) < len(doc.data) else data.decode("utf-8", "replace")
        if text:  # "ignore" drops only a character cut at the limit
            docs.append(text)
            total += len(text.encode("utf-8"))
    return docs


def multilingual_texts(limit: int | None = None, sample_bytes: int = DEFAULT_SAMPLE_BYTES) -> dict[str, list[str]]:
    """The documents of every text of the multilingual suite, by name (see the module docstring)."""
    if limit is not None and limit < 1:
        raise EvalError("the multilingual suite needs a positive limit")
    rows = _read_jsonl(_data_file(PUD_PARALLEL), limit)
    texts: dict[str, list[str]] = {}
    for lang in PUD_LANGUAGES:
        sentences = [row.get(lang) for row in rows]
        if not all(isinstance(s, str) and s for s in sentences):
            raise EvalError(f"{PUD_PARALLEL}: some rows lack a {lang!r} sentence; every row must hold all languages")
        texts[lang] = sentences
    for name, relative in GSD_FILES.items():
        texts[name] = [row["text"] for row in _read_jsonl(_data_file(relative), limit) if row.get("text")]
    for corpus in HELD_OUT_CORPORA:
        texts[corpus] = held_out_documents(corpus, sample_bytes, limit)
    return texts


def run_suite(loaded: "LoadedModel", name: str, *, limit: int | None = None, batch_size: int = 16,
              max_length: int | None = None, sample_bytes: int = DEFAULT_SAMPLE_BYTES,
              progress: bool = False) -> dict[str, float]:
    """Scores of suite ``name`` on ``loaded``: ``{"multilingual.bpb.en": ..., ...}``."""
    if name not in SUITES:
        raise EvalError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    texts = multilingual_texts(limit, sample_bytes)
    scores = bits_per_byte_of_texts(loaded, texts, batch_size=batch_size, max_length=max_length, progress=progress)
    return {PREFIX[name] + key: value for key, value in scores.items()}
