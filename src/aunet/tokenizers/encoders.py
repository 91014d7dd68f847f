"""Document encoders: one document of bytes to ``[BOS] + units + [EOS]`` and, for a multi-stage AU-Net, the level
of every unit. The family of a model config picks its encoder (:meth:`aunet.models.family.Family.encoder`); the data
pipeline packs what it returns (:mod:`aunet.data.packing`)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from aunet.splitting import compute_levels
from aunet.tokenizers.byte import ByteTokenizer

Window = tuple[np.ndarray, "np.ndarray | None"]  # tokens [S+1] int64, levels [S+1] uint8 (AU-Net) or None


class DocumentEncoder(Protocol):
    """Turns one document into ``[BOS] + units + [EOS]`` (and per-unit levels for AU-Net)."""

    vocab_size: int
    top_level: int | None

    def encode(self, data: bytes) -> Window: ...

    def token_bytes(self) -> np.ndarray:
        """``[vocab_size]`` int64: UTF-8 bytes each token stands for (0 for BOS/EOS)."""
        ...

    def identity(self) -> dict:
        """What decides the units (and levels) of a document: equal identities encode identically. Names packs."""
        ...


class ByteEncoder:
    """Bytes for AU-Net; ``rules`` are the model's split rules (empty for one stage: no levels)."""

    def __init__(self, rules: list[str]) -> None:
        self.rules = list(rules)
        self.top_level = len(self.rules)
        self.tokenizer = ByteTokenizer()
        self.vocab_size = self.tokenizer.vocab_size

    def encode(self, data: bytes) -> Window:
        tokens = self.tokenizer.encode(data, bos=True, eos=True)
        if not self.rules:
            return tokens, None
        levels = np.empty(len(tokens), dtype=np.uint8)
        levels[0] = self.top_level
        levels[1:-1] = compute_levels(data, self.rules)
        levels[-1] = 0
        return tokens, levels

    def token_bytes(self) -> np.ndarray:
        out = np.ones(self.vocab_size, dtype=np.int64)
        out[256:] = 0
        return out

    def identity(self) -> dict:
        return {"units": "bytes", "rules": self.rules}


class TokenizerEncoder:
    """BPE tokens: anything with ``encode(bytes) -> ids``, ``bos_id``, ``eos_id``, ``vocab_size``,
    ``token_byte_lengths()`` (see :class:`aunet.data.bpe.BPETokenizer`)."""

    top_level = None

    def __init__(self, tokenizer) -> None:  # noqa: ANN001 - duck-typed tokenizer
        self.tokenizer = tokenizer
        self.vocab_size = int(tokenizer.vocab_size)

    def encode(self, data: bytes) -> Window:
        ids = np.asarray(self.tokenizer.encode(data), dtype=np.int64)
        tokens = np.empty(len(ids) + 2, dtype=np.int64)
        tokens[0], tokens[-1] = self.tokenizer.bos_id, self.tokenizer.eos_id
        tokens[1:-1] = ids
        return tokens, None

    def token_bytes(self) -> np.ndarray:
        return np.asarray(self.tokenizer.token_byte_lengths(), dtype=np.int64)

    def identity(self) -> dict:
        return {"units": "tokens", "tokenizer": self.tokenizer.fingerprint()}
