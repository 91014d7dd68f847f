"""Data: corpora (files of text), the train/validation split, the BPE tokenizer, packing into sequences."""
