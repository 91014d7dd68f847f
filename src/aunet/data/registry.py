"""Named corpora under the data directory (``AUNET_DATA_DIR``), and downloading the public ones.

A config may say ``data.corpus: gutenberg_en`` instead of a path: :func:`resolve_corpus` turns a registered name
into a :class:`~aunet.data.corpus.CorpusSource` under the data directory, with the split method that suits it.
Anything else is taken as path(s) or a glob.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from aunet.data.corpus import CorpusSource, is_glob, suffix_of
from aunet.data.fineweb import CORPUS_DIR as FINEWEB_DIR
from aunet.data.fineweb import prepare_local
from aunet.errors import DataError, excerpt
from aunet.paths import DATA_DIR_ENV, data_dir


@dataclass(frozen=True)
class NamedCorpus:
    """A corpus known by name: ``relpath`` is a path or glob relative to the data directory, or a tuple of them (a
    mixed corpus; document keys are then relative to the parts' common folder)."""

    name: str
    relpath: str | tuple[str, ...]
    text_field: str
    split: str
    description: str
    url: str | None = None  # where `aunet data prepare` downloads it from; None when it cannot
    sha256: str | None = None  # expected content of a single downloaded file, checked before it is kept


_TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_FINEWEB_URL = "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu"
# Streaming keeps the download to the rows written; the sample config avoids resolving the full 1.3T-token listing.
_FINEWEB_DATASET = ("HuggingFaceFW/fineweb-edu", "sample-10BT", 20_000)

CORPORA: dict[str, NamedCorpus] = {
    c.name: c
    for c in (
        NamedCorpus("gutenberg_en", "corpora/gutenberg_en/books/*.txt", "text", "hash",
                    "34 public-domain English books (Project Gutenberg), one document per book"),
        NamedCorpus("tinyshakespeare", "corpora/tinyshakespeare/input.txt", "text", "tail",
                    "Tiny Shakespeare, 1.1 MB in one document (validation = its last bytes)",
                    url=_TINYSHAKESPEARE_URL,
                    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
        NamedCorpus("zh_cmrc2018", "corpora/multilingual/zh_cmrc2018_paragraphs/*.jsonl", "text", "hash",
                    "Simplified Chinese Wikipedia paragraphs (CMRC 2018), one document per paragraph"),
        NamedCorpus("ja_wikipedia_kyoto", "corpora/multilingual/ja_wikipedia_kyoto/*.jsonl", "text", "hash",
                    "Japanese Wikipedia sentences (Kyoto corpus), one document per sentence"),
        # Five books only: a hash split would hold out 0 or 2 of them, so every book gives its tail instead.
        NamedCorpus("gutenberg_multilingual", "corpora/multilingual/gutenberg_multilingual/*.txt", "text", "tail",
                    "Alice in Wonderland in en/fr/de/it and Frankenstein in fr (validation = each book's tail)"),
        # English, Simplified Chinese and Japanese in about equal parts (1.7, 1.6 and 1.2 MB of text), for split
        # rules across scripts with and without word spaces. The four books all hash to the training side, so the
        # validation side is 5% of the Chinese paragraphs and Japanese sentences.
        NamedCorpus("mixed_en_zh_ja", tuple(f"corpora/gutenberg_en/books/{book}.txt"
                                            for book in ("pg11", "pg74", "pg84", "pg1342"))
                    + ("corpora/multilingual/zh_cmrc2018_paragraphs/*.jsonl",
                       "corpora/multilingual/ja_wikipedia_kyoto/*.jsonl"), "text", "hash",
                    "four English books with the Chinese (CMRC 2018) and Japanese (Kyoto) Wikipedia text"),
        NamedCorpus("fineweb_edu_sample", "corpora/fineweb_edu_sample/sample-10BT-20000.jsonl", "text", "hash",
                    "first 20,000 documents of FineWeb-Edu sample-10BT (download with 'aunet data prepare')",
                    url=_FINEWEB_URL),
        NamedCorpus("fineweb_edu", f"{FINEWEB_DIR}/*.parquet", "text", "hash",
                    "FineWeb-Edu from its published parquet shards in a local folder ('aunet data prepare "
                    "fineweb_edu --source DIR' links them)"),
    )
}


def _unknown_name(name: str) -> DataError:
    hint = difflib.get_close_matches(name, CORPORA, n=1)
    suggestion = f"did you mean {hint[0]!r}? " if hint else ""
    return DataError(f"unknown corpus {excerpt(name)}; {suggestion}known: {', '.join(CORPORA)} "
                     "(or give a path or glob)")


def _relpaths(entry: NamedCorpus) -> tuple[str, ...]:
    return (entry.relpath,) if isinstance(entry.relpath, str) else tuple(entry.relpath)


def _matches(root: Path, entry: NamedCorpus) -> list[str]:
    """Files of the corpus; empty when any part of a mixed corpus is missing (it would be another corpus)."""
    found = []
    for rel in _relpaths(entry):
        part = sorted(glob.glob(str(root / rel)))
        if not part:
            return []
        found += part
    return found


def _location(root: Path, entry: NamedCorpus) -> Path:
    """The corpus's file, or the folder its glob lists (for a mixed corpus: the parts' common folder)."""
    places = [os.path.dirname(rel) if is_glob(rel) else rel for rel in _relpaths(entry)]
    return root / (places[0] if len(places) == 1 else os.path.commonpath(places))


def _looks_like_path(spec: str) -> bool:
    return os.path.exists(spec) or is_glob(spec) or "/" in spec or os.sep in spec or suffix_of(Path(spec)) is not None


def resolve_corpus(spec: str | Path | Sequence[str | Path]) -> tuple[CorpusSource, str]:
    """A corpus name, path, glob or list of paths -> (source, default split method).

    Names resolve under the data directory; anything else is path(s) with the ``hash`` split.
    """
    if isinstance(spec, str) and spec in CORPORA:
        entry = CORPORA[spec]
        root = data_dir(required=False)
        if root is None:
            raise DataError(f"corpus {excerpt(spec)} is read from the data directory, but {DATA_DIR_ENV} is not set "
                            "to a directory; set it (e.g. ../shared/data) or give a path")
        if not _matches(root, entry):
            how = f"run 'aunet data prepare {spec}'" if entry.url else "copy the files there"
            missing = next(rel for rel in _relpaths(entry) if not glob.glob(str(root / rel)))
            raise DataError(f"corpus {excerpt(spec)}: nothing at {root / missing}; {how}")
        paths = [str(root / rel) for rel in _relpaths(entry)]
        return CorpusSource(paths[0] if len(paths) == 1 else paths, text_field=entry.text_field), entry.split
    if isinstance(spec, str) and not _looks_like_path(spec):
        raise _unknown_name(spec)
    return CorpusSource(spec), "hash"


def list_corpora() -> list[dict]:
    """Every named corpus: name, description, path, available, size (bytes), files, documents, split, url.

    ``documents`` is only filled where it is free (one document per ``.txt`` file), None otherwise.
    """
    root = data_dir(required=False)
    rows = []
    for entry in CORPORA.values():
        found = [Path(p) for p in _matches(root, entry)] if root is not None else []
        found = [p for p in found if p.is_file()]
        all_txt = bool(found) and all(suffix_of(p) == ".txt" for p in found)
        rows.append({
            "name": entry.name,
            "description": entry.description,
            "path": str(_location(root, entry)) if root is not None else f"${DATA_DIR_ENV}/{_relpaths(entry)[0]}",
            "available": bool(found),
            "size": sum(p.stat().st_size for p in found),
            "files": len(found),
            "documents": len(found) if all_txt else None,
            "split": entry.split,
            "url": entry.url,
        })
    return rows


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _fetch_url(entry: NamedCorpus, out: BinaryIO, timeout: float) -> None:
    with urllib.request.urlopen(entry.url, timeout=timeout) as response:
        shutil.copyfileobj(response, out)


def _fetch_hf(entry: NamedCorpus, out: BinaryIO, timeout: float) -> None:
    """Stream the first rows of the hub dataset to ``out``; ``timeout`` is left to the hub client's own settings."""
    import datasets  # heavy, and only this corpus needs it

    repo, config, rows = _FINEWEB_DATASET
    stream = datasets.load_dataset(repo, name=config, split="train", streaming=True)
    for row in itertools.islice(stream, rows):
        record = {"text": row["text"], "id": row.get("id"), "url": row.get("url")}
        out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


_FETCHERS: dict[str, Callable] = {"fineweb_edu_sample": _fetch_hf}


# Corpora prepared from files the user already has (no network): name -> fn(source folder, data dir) -> path.
_LOCAL: dict[str, Callable[[Path, Path], Path]] = {"fineweb_edu": prepare_local}


def prepare_corpus(name: str, dest_root: Path | None = None, timeout: float = 20.0,
                   source: Path | None = None) -> Path:
    """Download the named public corpus into ``dest_root`` (default: the data directory), or link it from the
    local folder ``source`` (``fineweb_edu``: its parquet shards); return its path.

    Nothing is downloaded when the corpus is already there. The file is written to a temporary name and renamed,
    so an interrupted download never leaves a partial corpus behind.
    """
    if name not in CORPORA:
        raise _unknown_name(name)
    entry = CORPORA[name]
    if (source is not None) != (name in _LOCAL):
        if source is None:
            raise DataError(f"{name}: give --source DIR, the local folder of its published parquet shards (e.g. a "
                            "download of HuggingFaceFW/fineweb-edu's sample/10BT)")
        raise DataError(f"{name}: --source is only for {', '.join(_LOCAL)}; leave it out")
    root = Path(dest_root) if dest_root is not None else data_dir(required=False)
    if name in _LOCAL:
        if root is None:
            raise DataError(f"{name}: {DATA_DIR_ENV} is not set to a directory; set it or give --dest")
        return _LOCAL[name](Path(source), root)
    source = entry.url or "no download source"
    if root is None:
        raise DataError(f"{name}: {DATA_DIR_ENV} is not set to a directory; set it, or download {source} by hand "
                        f"and put it at <data dir>/{', '.join(_relpaths(entry))}")
    if _matches(root, entry):
        return _location(root, entry)
    if entry.url is None:
        places = ", ".join(str(root / rel) for rel in _relpaths(entry))
        raise DataError(f"{name}: not downloadable as a whole; copy its files to {places} "
                        f"(see SOURCE.md in the shared data folder for where they came from)")
    target = root / _relpaths(entry)[0]  # downloadable corpora are single files
    by_hand = f"download {entry.url} by hand and save it as {target}"
    if name in _FETCHERS and _offline():  # fail before creating folders that would stay empty
        raise DataError(f"{name}: offline mode (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set), cannot fetch "
                        f"from {entry.url}; unset it, or {by_hand}")
    created = not target.parent.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise DataError(f"{name}: cannot write to {target.parent} ({exc.strerror or exc}); {by_hand}") from None
    try:
        with tmp:
            _FETCHERS.get(name, _fetch_url)(entry, tmp, timeout)
        if entry.sha256 is not None:
            digest = hashlib.sha256(Path(tmp.name).read_bytes()).hexdigest()
            if digest != entry.sha256:
                raise DataError(f"{name}: downloaded file from {entry.url} has sha256 {digest[:12]}..., expected "
                                f"{entry.sha256[:12]}...; {by_hand}")
        os.replace(tmp.name, target)
    except DataError:
        raise
    except Exception as exc:  # network, HTTP, `datasets` and disk errors come in many types; all mean "failed"
        text = str(getattr(exc, "reason", None) or exc)
        reason = text.splitlines()[0] if text.strip() else type(exc).__name__
        raise DataError(f"{name}: download failed ({reason}) from {entry.url}; {by_hand}") from None
    finally:
        _remove(tmp.name)  # a no-op after os.replace; otherwise drops the partial download
        if created and not target.exists():
            _remove(target.parent)
    return target


def _remove(path: str | Path) -> None:
    """Delete a file or an empty folder, ignoring errors (cleanup must not hide the original failure)."""
    try:
        if os.path.isdir(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass
