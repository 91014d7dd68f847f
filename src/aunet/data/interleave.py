"""Interleaving documents: a training stream that mixes many documents from its first bytes on.

Read one document after another, a run that sees a few megabytes of a corpus of books sees two or three books, and
which ones depends on its seed: at the CPU study's smallest budgets, three seeds of one model differed by up to 1.1
bits per byte for that reason alone. Cut into pieces and drawn from a pool of open documents, the same bytes arrive
mixed, so a short run samples the whole corpus and seeds differ only in which pieces, not which books.

Each piece is treated as a document by the packer (BOS and EOS around it): with 64 KB pieces that is two tokens in
tens of thousands. Every byte of every document is emitted exactly once per epoch, each document's pieces in order.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

SEARCH = 16  # a cut looks for a line break (then a space) in the last 1/SEARCH of a piece


def cut_point(data: bytes, start: int, piece_bytes: int) -> int:
    """Where the piece of ``data`` starting at ``start`` ends: after the last line break, else the last space, in
    the final ``piece_bytes / SEARCH`` bytes before ``start + piece_bytes``; else at a UTF-8 character boundary
    there. The rest of the document when it is shorter than that."""
    end = start + piece_bytes
    if end >= len(data):
        return len(data)
    lo = end - max(1, piece_bytes // SEARCH)
    for sep in (b"\n", b" "):
        at = data.rfind(sep, lo, end)
        if at >= 0:
            return at + 1
    while end > start + 1 and (data[end] & 0xC0) == 0x80:  # never split a multi-byte character
        end -= 1
    return end


def interleave(documents: Iterable[bytes], piece_bytes: int, pool: int, rng: np.random.Generator) -> Iterator[bytes]:
    """Pieces of about ``piece_bytes`` bytes from up to ``pool`` documents held open at once: each next piece comes
    from a document drawn uniformly from the pool, and a finished document is replaced by the next one of
    ``documents``. Deterministic given ``rng``; memory is ``pool`` documents."""
    source = iter(documents)
    active: list[list] = []  # [data, offset] of each open document

    def refill() -> None:
        while len(active) < pool:
            data = next(source, None)
            if data is None:
                return
            if data:
                active.append([data, 0])

    refill()
    while active:
        i = int(rng.integers(len(active)))
        data, start = active[i]
        end = cut_point(data, start, piece_bytes)
        yield data[start:end]
        if end >= len(data):
            active.pop(i)
            refill()
        else:
            active[i][1] = end
