"""The byte tokenizer of AU-Net: 256 byte values plus BOS and EOS (vocabulary 258)."""

from __future__ import annotations

from typing import Iterable

import numpy as np


class ByteTokenizer:
    """UTF-8 bytes 0..255 as themselves, BOS = 256, EOS = 257.

    Any byte string is valid input, invalid UTF-8 included: the model reads bytes, not characters.
    ``encode`` returns ``int64`` arrays so they convert to ``torch.long`` without a copy.
    """

    vocab_size: int = 258
    bos_id: int = 256
    eos_id: int = 257

    def encode(self, data: str | bytes | bytearray | memoryview, *, bos: bool = True, eos: bool = False) -> np.ndarray:
        """Token ids of ``data``: ``[BOS] + bytes + [EOS]`` with the specials as asked; shape ``[len]``, int64."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        body = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
        parts = []
        if bos:
            parts.append(np.array([self.bos_id], dtype=np.int64))
        parts.append(body)
        if eos:
            parts.append(np.array([self.eos_id], dtype=np.int64))
        return np.concatenate(parts) if len(parts) > 1 else body

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes among ``ids``, special tokens dropped."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        return arr[arr < 256].astype(np.uint8).tobytes()

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids`` (special tokens dropped); invalid UTF-8 becomes U+FFFD unless ``errors`` says otherwise."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)
