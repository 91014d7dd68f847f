"""The BPE transformer baseline, built from the same blocks as AU-Net's stages."""

from __future__ import annotations

from torch import Tensor, nn

from aunet.models.config import BPEConfig
from aunet.models.layers import TransformerStack, init_weights


class BPETransformer(nn.Module):
    """Token embedding, a causal transformer stack, final RMSNorm and an untied output head."""

    def __init__(self, config: BPEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.trunk = TransformerStack(c.dim, c.layers, c.head_dim, c.resolved_ffn_dim, c.window, c.seq_len,
                                      c.rope_theta, c.norm_eps)
        self.norm = nn.RMSNorm(c.dim, eps=c.norm_eps)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        init_weights(self)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens`` ``[B, S]`` long -> next-token logits ``[B, S, vocab_size]``."""
        return self.head(self.norm(self.trunk(self.embed(tokens))))
