"""Reference levels of a sweep: the bits per byte that n-gram statistics alone reach on the runs' validation text.

A model that scores no better than a Kneser-Ney byte n-gram fitted on the bytes it trained on has learned nothing
an n-gram table could not hold; :func:`sweep_reference_levels` measures those levels for ``aunet analyze``, which
stores them in ``fits.json`` under ``reference_levels`` and draws them on the scaling plot. The math is in
:mod:`aunet.analysis.ngram`; this module decides which bytes it sees:

* **Validation text**: exactly what every run is scored on, rebuilt from the largest run's ``config.yaml`` by the
  runs' own data module and :func:`aunet.data.packing.validation_texts` (the first ``data.val_bytes`` bytes of the
  validation split); its length is checked against the run's ``summary.json``, and the corpus against the
  fingerprint recorded there, so a corpus that changed since the runs is refused rather than silently scored.
* **Training text**: what the largest run (the finished run with the most ``bytes_seen``) read: the first
  ``bytes_seen`` bytes of its training stream, that is the training split's documents in the file order of epoch 0
  under its seed (``CorpusSplit.train_documents(epoch=0, seed)``, what its data loader packs), the last document cut
  there. The run drew the windows of that stream through a shuffle buffer of ``B = data.shuffle_buffer`` windows:
  its first ``K`` windows all come from the stream's first ``K + B``, and miss at most ``B`` of its first ``K``, so
  the two texts differ only around the cut, by at most ``B * seq_len`` bytes each way. In the CPU study that is
  0.52 MB against 7.07 MB read, and fitting on a prefix that much shorter or longer moved the levels of orders 1,
  2, 4, 6 and 8 by at most 0.0031 bits per byte. A run that read more than one
  epoch saw no text beyond the whole split; the n-gram is then fitted on the whole split once, since repeating the
  text would only scale its counts.
* **BPE tokenizer**: the one the sweep's BPE runs used: the ``tokenizer/`` saved in the folder of the BPE run that
  read the most bytes when present, else the cached tokenizer the runs train (rebuilt on a cache miss, exactly as a
  run would); its fingerprint is compared with the one in that run's ``summary.json``.

Results are cached in ``$AUNET_CACHE_DIR/reference/<fingerprint>.json``, keyed by the bytes themselves (training,
validation), the orders, the tokenizer and :data:`METHOD_VERSION`, so repeated ``aunet analyze`` calls are instant.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aunet.analysis import ngram, tables
from aunet.analysis.store import to_jsonable
from aunet.data.bpe import BPETokenizer
from aunet.data.packing import validation_texts
from aunet.data.pipeline import DataPipeline
from aunet.errors import UserError
from aunet.io import atomic_write_json
from aunet.models import family_of
from aunet.paths import cache_dir
from aunet.training.config import load_recorded_config
from aunet.training.records import RunPaths
from aunet.training.summary import RunSummary, read_summary

if TYPE_CHECKING:  # pandas is imported where a table is read, so the CLI can read the constants below cheaply
    import pandas as pd

FITS_KEY = "reference_levels"
DEFAULT_MAX_ORDER = ngram.MAX_ORDER
MIN_ORDER = ngram.MIN_ORDER
# Bump when what is computed or how changes: it is part of the cache key.
METHOD_VERSION = 1
_ENCODE_BATCH_BYTES = 4 << 20  # documents handed to the Rust batch encoder at once
_CHUNK = 1 << 20  # documents longer than this reach the encoder in pieces (BPE merges never span pre-tokens)

NGRAM_METHOD = ("interpolated modified Kneser-Ney byte n-grams (Chen & Goodman 1998): raw counts at the top order, "
                "continuation counts below, three discounts per order from counts-of-counts, uniform 1/256 base; "
                "n-grams counted within documents, each byte predicted from the bytes before it in its document")
UNIGRAM_METHOD = ("add-one unigram over the BPE tokenizer's text tokens (specials excluded): token counts of the "
                  "training text, each document tokenized as the runs do; bits per byte = sum of -log2 p(token) over "
                  "the validation tokens / validation UTF-8 bytes")


class ReferenceUnavailable(UserError):
    """Reference levels cannot be computed for this sweep (no data, no run configs); the message says why."""


@dataclass(frozen=True)
class RunData:
    """One run's data-relevant records: its id, folder, the bytes it read, its config and summary (empty when it
    has none)."""

    run_id: str
    folder: Path
    bytes_seen: int
    config: Any  # aunet.training.config.RunConfig
    summary: RunSummary


def _read_run(row: Any, results_dir: Path) -> RunData:
    folder = tables.resolve_run_dir(row.run_dir, results_dir)
    if folder is None or not RunPaths(folder).config.is_file():
        raise ReferenceUnavailable(f"run {row.run_id}: no run folder with config.yaml (run_dir {row.run_dir!r}), so "
                                   "its corpus and split are unknown")
    paths = RunPaths(folder)
    # Only its data records are used (the validation text's size, the corpus fingerprint), checked where they are
    # used; whether the run's numbers are a result is the table's to say (runs.csv), so the record is not checked.
    summary = read_summary(paths.summary, check=False) if paths.summary.is_file() else RunSummary()
    return RunData(row.run_id, folder, int(round(row.bytes_seen)), load_recorded_config(paths.config), summary)


def _trains_tokenizer(row: Any, results_dir: Path) -> bool:
    """Whether the run of ``row`` trained a tokenizer (its config's family says), whose unigram is a reference."""
    folder = tables.resolve_run_dir(row.run_dir, results_dir)
    if folder is None or not RunPaths(folder).config.is_file():
        return False
    return family_of(load_recorded_config(RunPaths(folder).config).model).needs_tokenizer


def largest_run(runs: pd.DataFrame) -> Any:
    """The row of the finished run with the most ``bytes_seen`` (the first listed among ties), or None."""

    done = tables.finished(runs)
    done = done[done["bytes_seen"].notna() & (done["bytes_seen"] > 0)]
    return None if done.empty else _most_bytes(done)


def _most_bytes(runs: pd.DataFrame) -> Any:
    """The row (a named tuple) with the most ``bytes_seen``, the first listed among ties (``idxmax``)."""
    return next(runs.loc[[runs["bytes_seen"].idxmax()]].itertuples(index=False))


def matches_runs(record: dict[str, Any], runs: pd.DataFrame) -> bool:
    """Whether a stored ``record`` was fitted on the training text of the current largest run of ``runs``."""
    row = largest_run(runs)
    text = record.get("training_text", {}) if isinstance(record, dict) else {}
    return row is not None and text.get("run_id") == row.run_id and text.get("bytes_seen") == int(round(row.bytes_seen))


def select_runs(runs: pd.DataFrame, results_dir: str | Path) -> tuple[RunData, RunData | None]:
    """The run whose training bytes the n-grams are fitted on (finished, most ``bytes_seen``; ties: first listed)
    and the BPE run whose tokenizer the unigram uses (finished BPE run with the most ``bytes_seen``, or None)."""

    row = largest_run(runs)
    if row is None:
        raise ReferenceUnavailable("no finished run with bytes_seen in runs.csv")
    largest = _read_run(row, Path(results_dir))
    done = tables.finished(runs)
    done = done[done["bytes_seen"].notna() & (done["bytes_seen"] > 0)]
    bpe = done[[_trains_tokenizer(row, Path(results_dir)) for row in done.itertuples(index=False)]]
    bpe_run = _read_run(_most_bytes(bpe), Path(results_dir)) if len(bpe) else None
    return largest, bpe_run


def first_bytes(documents: Iterable[bytes], n_bytes: int) -> tuple[list[bytes], bool]:
    """The first ``n_bytes`` bytes of the concatenated ``documents``, as documents (the last one cut), and whether
    the stream ran out first (``n_bytes`` beyond its end: all of it is returned). Empty documents are dropped."""
    out, total = [], 0
    for data in documents:
        if total >= n_bytes:
            return out, False
        piece = data[: n_bytes - total]
        if piece:
            out.append(piece)
            total += len(piece)
    return out, total < n_bytes


def training_text(results_dir: str | Path, runs: pd.DataFrame | None = None, *, n_bytes: int) -> list[bytes]:
    """The first ``n_bytes`` bytes of the training stream of the largest finished run of ``runs`` (default: the
    sweep's ``runs.csv``): its training split's documents in epoch 0's file order under its seed, the last one cut.

    Its corpus is checked against the fingerprint in the run's ``summary.json``. Raises
    :class:`ReferenceUnavailable` (or another :class:`~aunet.errors.UserError`, e.g. no data directory) with a
    one-line reason when the text cannot be rebuilt.
    """
    if n_bytes <= 0:
        raise ReferenceUnavailable(f"n_bytes must be positive, got {n_bytes}")
    runs = tables.read_runs(results_dir) if runs is None else runs
    row = largest_run(runs)
    if row is None:
        raise ReferenceUnavailable("no finished run with bytes_seen in runs.csv")
    run = _read_run(row, Path(results_dir))
    module = _run_data(run.config)
    _check_corpus(module, run)
    text, _ = first_bytes(_training_stream(module, run.config), n_bytes)
    return text


def _sha256_documents(documents: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for data in documents:  # lengths first: document boundaries matter to the n-gram counts
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_key(train: Sequence[bytes], validation: Sequence[bytes], max_order: int, tokenizer: str | None) -> str:
    """sha256 naming one computation: the training and validation bytes, the orders, the tokenizer, the method."""
    payload = {"train": _sha256_documents(train), "validation": _sha256_documents(validation),
               "max_order": max_order, "tokenizer": tokenizer, "version": METHOD_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _pieces(documents: Sequence[bytes]) -> Iterable[list[bytes]]:
    """Batches of at most ~``_ENCODE_BATCH_BYTES`` for the batch encoder, long documents cut into ``_CHUNK`` pieces.

    Cutting a document can split one pre-token (a word) in two at each cut, one token in a million bytes: far below
    what the unigram level can show, and it keeps the encoder's memory bounded on book-sized documents."""
    batch, size = [], 0
    for data in documents:
        for start in range(0, len(data), _CHUNK):
            batch.append(data[start:start + _CHUNK])
            size += len(batch[-1])
            if size >= _ENCODE_BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def bpe_unigram_level(tokenizer: Any, train: Sequence[bytes], validation: Sequence[bytes]) -> dict[str, Any]:
    """The add-one unigram over ``tokenizer``'s text tokens fitted on ``train``, scored on ``validation``.

    The validation documents are encoded whole, one by one, as the runs encode them; the training text in batches
    (see :func:`_pieces`). Returns bits per byte and the token counts behind it.
    """
    lengths = np.asarray(tokenizer.token_byte_lengths())
    text_tokens = lengths > 0
    counts = np.zeros(len(lengths), dtype=np.int64)
    for batch in _pieces(train):
        for ids in tokenizer.encode_batch(batch):
            counts += ngram.token_counts(ids, len(lengths))
    val_ids = np.concatenate([tokenizer.encode(d) for d in validation]) if validation else np.zeros(0, np.int64)
    n_val_bytes = sum(len(d) for d in validation)
    bits = ngram.unigram_bits(counts, val_ids, text_tokens)
    return {"bpb": bits / n_val_bytes, "bits": bits, "training_tokens": int(counts.sum()),
            "validation_tokens": int(len(val_ids)), "text_tokens": int(text_tokens.sum()),
            "unseen_validation_tokens": int((counts[val_ids] == 0).sum()), "smoothing": "add-one",
            "method": UNIGRAM_METHOD}


def byte_ngram_levels(train: Sequence[bytes], validation: Sequence[bytes], max_order: int) -> dict[str, Any]:
    """Bits per byte of the Kneser-Ney byte models of orders 1..``max_order``, the best order, and the discounts."""
    n_val = sum(len(d) for d in validation)
    orders, bpb, discounts = [], [], {}
    for model in ngram.kneser_ney_models(train, max_order):
        orders.append(model.order)
        bpb.append(model.bits(validation) / n_val)
        top = model.tables[-1]
        discounts[str(model.order)] = {"discounts": list(top.discounts), "modified": top.modified}
    best = int(np.argmin(bpb))
    return {"orders": orders, "bpb": bpb, "best_order": orders[best], "best_bpb": bpb[best],
            "top_order_discounts": discounts, "method": NGRAM_METHOD}


def _run_data(config: Any) -> DataPipeline:
    return DataPipeline(config.data, config.model, config.train.seed)


def _training_stream(module: DataPipeline, config: Any) -> Iterator[bytes]:
    """The documents a run's data loader packs into windows: its training split in epoch 0's file order under its
    seed (the module docstring says how far the shuffle buffer moves them)."""
    return (doc.data for doc in module.split.train_documents(epoch=0, seed=config.train.seed))


def _same_data(a: Any, b: Any) -> bool:
    keys = ("corpus", "text_field", "split", "val_fraction", "val_documents", "val_bytes")
    return all(getattr(a.data, k) == getattr(b.data, k) for k in keys)


def _check_corpus(module: Any, run: RunData) -> None:
    """Refuse a corpus whose content differs from the one ``run`` trained on (when its summary records it)."""
    recorded = run.summary.data.get("corpus")
    if recorded and recorded != module.source.fingerprint():
        raise ReferenceUnavailable(f"the corpus {run.config.data.corpus!r} changed since run {run.run_id} was trained "
                                   "(its fingerprint differs from the run's summary.json)")


def _bpe_tokenizer(run: RunData) -> tuple[Any, str]:
    """The BPE run's tokenizer and where it came from (its run folder, else the runs' tokenizer cache)."""

    folder = RunPaths(run.folder).tokenizer
    if folder.is_dir():  # saved there by the run itself (not committed: .gitignore)
        return BPETokenizer.load(folder), f"run folder of {run.run_id}"
    data = _run_data(run.config)
    data.prepare_tokenizer()
    data.setup_validation()
    return data.tokenizer, "the runs' tokenizer cache (AUNET_CACHE_DIR)"


def sweep_reference_levels(results_dir: str | Path, runs: pd.DataFrame | None = None, *,
                           max_order: int = DEFAULT_MAX_ORDER, use_cache: bool = True) -> tuple[dict[str, Any], bool]:
    """The reference levels of the sweep in ``results_dir`` (its ``runs.csv`` unless ``runs`` is given).

    Returns the record for ``fits.json["reference_levels"]`` and whether it came from the cache. Raises
    :class:`ReferenceUnavailable` (or another :class:`~aunet.errors.UserError`, e.g. a missing data directory) with
    a one-line reason when the levels cannot be computed.
    """

    if not MIN_ORDER <= max_order <= ngram.MAX_ORDER:
        raise ReferenceUnavailable(f"max order {max_order} is outside {MIN_ORDER}..{ngram.MAX_ORDER}")
    results_dir = Path(results_dir)
    runs = tables.read_runs(results_dir) if runs is None else runs
    largest, bpe_run = select_runs(runs, results_dir)
    module = _run_data(largest.config)
    _check_corpus(module, largest)
    validation = validation_texts((doc.data for doc in module.split.val_documents()), largest.config.data.val_bytes)
    n_val = sum(len(d) for d in validation)
    recorded_val = largest.summary.val_text_bytes
    if not validation or (recorded_val is not None and int(recorded_val) != n_val):
        raise ReferenceUnavailable(f"the validation text now has {n_val} bytes but run {largest.run_id} was scored on "
                                   f"{recorded_val}; the corpus or split changed since the runs")
    seed = largest.config.train.seed
    train, whole_split = first_bytes(_training_stream(module, largest.config), largest.bytes_seen)
    notes = []
    if whole_split:
        notes.append(f"run {largest.run_id} read {largest.bytes_seen} bytes, more than the training split's "
                     f"{sum(map(len, train))}: fitted on the whole split once")
    tokenizer, tokenizer_source = None, None
    if bpe_run is None:
        notes.append("no finished BPE run: the BPE unigram level is left out")
    elif not _same_data(bpe_run.config, largest.config):
        notes.append(f"BPE run {bpe_run.run_id} reads other data than {largest.run_id}: the BPE unigram is left out")
    else:
        tokenizer, tokenizer_source = _bpe_tokenizer(bpe_run)
        recorded = bpe_run.summary.data.get("tokenizer")
        if recorded and recorded != tokenizer.fingerprint():
            notes.append(f"the tokenizer from {tokenizer_source} differs from the one run {bpe_run.run_id} recorded "
                         "(fingerprint mismatch); the BPE unigram uses it anyway")
    key = cache_key(train, validation, max_order, tokenizer.fingerprint() if tokenizer is not None else None)
    levels, cached = _cached_levels(Path(cache_dir()) / "reference" / f"{key}.json", use_cache,
                                    lambda: _compute_levels(train, validation, max_order, tokenizer))
    data = largest.config.data
    record: dict[str, Any] = {
        "validation_bytes": n_val,
        "validation_documents": len(validation),
        "training_bytes": sum(len(d) for d in train),
        "training_documents": len(train),
        "training_text": {
            "run_id": largest.run_id, "bytes_seen": largest.bytes_seen, "seed": seed, "corpus": str(data.corpus),
            "whole_split": whole_split, "shuffle_buffer_windows": data.shuffle_buffer,
            "how": "the first bytes_seen bytes of the training split's documents in the run's epoch-0 file order "
                   "(the stream its data loader packs into windows, the last document cut there); the run drew "
                   "windows through a shuffle buffer of shuffle_buffer_windows windows, so the text it trained on "
                   "differs from this prefix only around the cut, by at most that many windows each way",
        },
        "byte_ngram": levels["byte_ngram"],
    }
    if "bpe_unigram" in levels:
        assert bpe_run is not None and tokenizer is not None
        record["bpe_unigram"] = {**levels["bpe_unigram"], "run_id": bpe_run.run_id,
                                 "vocab_size": int(tokenizer.vocab_size), "tokenizer": tokenizer.fingerprint(),
                                 "tokenizer_source": tokenizer_source}
    record.update(notes=notes, fingerprint=key, seconds=levels["seconds"])
    return record, cached


def _compute_levels(train: Sequence[bytes], validation: Sequence[bytes], max_order: int,
                    tokenizer: Any | None) -> dict[str, Any]:
    """The numbers only (what the cache holds): byte n-gram levels, the BPE unigram level, seconds taken."""
    started = time.perf_counter()
    levels: dict[str, Any] = {"byte_ngram": byte_ngram_levels(train, validation, max_order)}
    if tokenizer is not None:
        levels["bpe_unigram"] = bpe_unigram_level(tokenizer, train, validation)
    levels["seconds"] = time.perf_counter() - started
    return levels


def _cached_levels(path: Path, use_cache: bool, compute: Any) -> tuple[dict[str, Any], bool]:
    """``compute()``'s result from ``path`` when there (and ``use_cache``), else computed and stored there.

    Only numbers are cached, never which runs they were computed for: two sweeps over the same bytes share them.
    """

    if use_cache and path.is_file():
        try:
            return json.loads(path.read_text()), True
        except json.JSONDecodeError:
            pass  # an entry damaged on disk or by hand is recomputed and replaced
    levels = to_jsonable(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, levels)
    return levels, False


def summary_line(record: dict[str, Any]) -> str:
    """One line for the terminal: the levels and what they were fitted on."""
    ng = record["byte_ngram"]
    orders = ng["orders"]
    low = ", ".join(f"{o}: {b:.3f}" for o, b in zip(orders, ng["bpb"]))
    parts = [f"byte n-gram bpb by order {{{low}}} (best {ng['best_bpb']:.3f} at order {ng['best_order']})"]
    if "bpe_unigram" in record:
        parts.append(f"BPE unigram {record['bpe_unigram']['bpb']:.3f}")
    return (f"{'; '.join(parts)}; fitted on {record['training_bytes']:,} training bytes, "
            f"scored on {record['validation_bytes']:,} validation bytes")
