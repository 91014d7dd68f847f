"""Tokenizers: bytes for AU-Net (:class:`ByteTokenizer`); the BPE baseline's tokenizer comes with training."""

from aunet.tokenizers.byte import ByteTokenizer

__all__ = ["ByteTokenizer"]
