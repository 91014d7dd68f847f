"""Bits per byte, computed the same way for bytes and BPE tokens."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from aunet.data.bpe import BPETokenizer
from aunet.data.packing import PAD, ByteEncoder, TokenizerEncoder, validation_set
from aunet.data.pipeline import DataPipeline, ValidationWindows
from aunet.training.module import LanguageModelModule
from tests.training.helpers import TINY_AUNET, TINY_BPE, tiny_run

OPTIM = dict(lr=1e-3, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1, warmup_steps=0, min_lr_ratio=0.1, total_steps=1)


class UniformOverBytes(nn.Module):
    """Predicts each of the 256 byte values with probability 1/256 and never BOS/EOS."""

    def forward(self, tokens: torch.Tensor, levels=None, return_stats=False):
        logits = torch.zeros(*tokens.shape, 258)
        logits[..., 256:] = -1e9
        return logits


def validate(module: LanguageModelModule, val) -> dict[str, float]:
    loader = torch.utils.data.DataLoader(ValidationWindows(val), batch_size=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, loader, verbose=False)
    return metrics


def test_uniform_byte_model_scores_exactly_8_bits_per_byte(english_text):
    enc = ByteEncoder(["word@1"])
    val = validation_set(iter([english_text[:5000], english_text[9000:12000]]), enc, seq_len=64, max_bytes=10**6)
    module = LanguageModelModule(TINY_AUNET | {"family": "aunet"}, OPTIM, micro_batch=3,
                                 token_bytes=enc.token_bytes().tolist(), val_text_bytes=val.text_bytes)
    module.model = UniformOverBytes()
    metrics = validate(module, val)
    assert metrics["val/bpb"] == pytest.approx(8.0, abs=1e-6)
    assert metrics["val/token_bytes"] == val.text_bytes == 8000


@pytest.fixture(scope="module")
def small_tokenizer(english_text) -> BPETokenizer:
    return BPETokenizer.train([english_text[:60_000]], vocab_size=320)


def test_bpe_bits_per_byte_equals_a_hand_computation(english_text, small_tokenizer):
    torch.manual_seed(0)
    enc = TokenizerEncoder(small_tokenizer)
    text = [english_text[100_000:104_000], english_text[150_000:152_500]]
    val = validation_set(iter(text), enc, seq_len=24, max_bytes=10**6)
    module = LanguageModelModule(TINY_BPE, OPTIM, micro_batch=3, token_bytes=enc.token_bytes().tolist(),
                                 val_text_bytes=val.text_bytes)
    metrics = validate(module, val)

    # By hand: encode each document on its own, score every text token with the model, sum nats over all bytes.
    nats = 0.0
    model = module.model.eval()
    with torch.no_grad():
        for window in val.tokens:
            window = torch.from_numpy(window)
            inputs, targets = window[:-1].clamp(min=0), window[1:]
            logp = torch.log_softmax(model(inputs[None]).float()[0], dim=-1)
            for pos, tok in enumerate(targets.tolist()):
                if tok != PAD and tok not in (small_tokenizer.bos_id, small_tokenizer.eos_id):
                    nats -= logp[pos, tok].item()
    n_bytes = sum(len(t) for t in text)
    assert val.text_bytes == n_bytes
    assert metrics["val/bpb"] == pytest.approx(nats / (n_bytes * math.log(2)), rel=1e-5)


def test_both_families_score_the_same_validation_text(tmp_path, data_dir):
    texts = {}
    for model in (TINY_AUNET, TINY_BPE):
        run = tiny_run(tmp_path, model=model)
        dm = DataPipeline(run.data, run.model, run.train.seed)
        dm.prepare()
        dm.setup()
        tokens = dm.val_set.tokens
        if model is TINY_AUNET:
            units = np.concatenate([tokens[0, :1], tokens[:, 1:].ravel()])
            texts["aunet"] = bytes(int(t) for t in units if 0 <= t < 256)
        else:
            ids = np.concatenate([tokens[0, :1], tokens[:, 1:].ravel()])
            texts["bpe"] = dm.tokenizer.decode_bytes([int(t) for t in ids if t >= 0])
        texts[f"{model['family']}_bytes"] = dm.val_text_bytes
    assert texts["aunet"] == texts["bpe"] and len(texts["aunet"]) == texts["aunet_bytes"] == texts["bpe_bytes"]
