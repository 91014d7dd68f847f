"""A byte model with learned chunk boundaries: H-Net's dynamic chunking on our transformer blocks.

Contracting path: each non-deepest stage ``i`` runs its encoder, keeps the output as the skip, and its router
(:class:`~aunet.models.chunking.Router`) decides which positions start a chunk; the encoder outputs at chunk starts,
normalised and projected (:class:`~aunet.models.transitions.Downsample`), form the sequence of stage ``i+1``. The
deepest stage (the main network) runs over its chunks. Expanding path: each stage's outputs are smoothed over its
chunks, projected back and repeated onto the positions of each chunk (:class:`~aunet.models.chunking.Dechunk`),
added to the skip, and refined by the stage's decoder. A final RMSNorm and a linear head give next-byte logits.

Deeper stages run at the batch's largest chunk count, capped (training) or not (evaluation): the real chunks first,
padding after them, so no real position attends to padding. A cap keeps the first ``caps[i]`` chunks; the positions
after the last kept chunk start reuse it, as in AU-Net (P5). H-Net's Mamba-2 layers are not used: every stack is
:class:`~aunet.models.layers.TransformerStack` with AU-Net's windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aunet.models.chunking import BOUNDARY_THRESHOLD, Dechunk, Router, ratio_loss
from aunet.models.config import HNetConfig
from aunet.models.layers import TransformerStack, init_weights
from aunet.models.transitions import Downsample, keep_first_boundaries, pooling_index, segment_index

BOS_BYTE = 256  # the first position of every document is forced to start a chunk


@dataclass
class HNetStats:
    """What one forward pass decided, per chunking step ``i`` (stage ``i`` -> ``i+1``), for logging and for charging
    its realized FLOPs.

    Attributes:
        seq_len: byte positions per sequence.
        positions: ``[B, L_i]`` long, the byte position of every stage-``i`` entry (stage 0: every byte).
        real: ``[B, L_i]`` bool, entries that are not padding.
        forced: ``[B, L_i]`` bool, entries forced to start a chunk (position 0 and each document's first byte).
        prob: ``[B, L_i]`` chunk-start probabilities (1 where forced).
        boundary: ``[B, L_i]`` bool, the router's decisions at real entries (before the cap).
        selected: ``[B]`` chunk starts the router chose; ``kept``: ``[B]`` how many entered stage ``i+1`` (the cap).
        lengths: the length stage ``i+1`` ran at (the batch's largest kept count): what its FLOPs are charged for.
        ratio_losses: 0-d ratio loss of each step.
    """

    seq_len: int
    positions: list[Tensor]
    real: list[Tensor]
    forced: list[Tensor]
    prob: list[Tensor]
    boundary: list[Tensor]
    selected: list[Tensor]
    kept: list[Tensor]
    lengths: list[int]
    ratio_losses: list[Tensor]


class HNet(nn.Module):
    """See the module docstring and :class:`~aunet.models.config.HNetConfig` for the knobs."""

    def __init__(self, config: HNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        n = c.n_stages
        ffn, windows = c.resolved_ffn_dims, c.resolved_windows

        def stack(i: int) -> TransformerStack:
            return TransformerStack(c.dims[i], c.layers[i], c.head_dims[i], ffn[i], windows[i], c.caps[i], c.rope_theta,
                                    c.norm_eps)

        self.embed = nn.Embedding(c.vocab_size, c.dims[0])
        self.encoders = nn.ModuleList(stack(i) for i in range(n - 1))
        self.routers = nn.ModuleList(Router(c.dims[i]) for i in range(n - 1))
        self.downs = nn.ModuleList(Downsample(c.dims[i], c.dims[i + 1], c.norm_eps) for i in range(n - 1))
        self.main = stack(n - 1)
        self.dechunks = nn.ModuleList(Dechunk(c.dims[i + 1], c.dims[i], c.norm_eps) for i in range(n - 1))
        self.decoders = nn.ModuleList(stack(i) for i in range(n - 1))
        self.norm = nn.RMSNorm(c.dims[0], eps=c.norm_eps)
        self.head = nn.Linear(c.dims[0], c.vocab_size, bias=False)
        init_weights(self)
        for router in self.routers:
            router.reset_to_identity()  # init_weights drew them at random like every linear map

    def forward(self, tokens: Tensor, *, use_caps: bool = True,
                return_stats: bool = False) -> Tensor | tuple[Tensor, HNetStats]:
        """Next-byte logits.

        Args:
            tokens: ``[B, S]`` long, byte ids 0..257 (BOS 256 starts each document).
            use_caps: keep at most ``caps[i+1]`` chunks per sequence (training). With False every chunk is kept
                (evaluation and generation of long inputs).
            return_stats: also return :class:`HNetStats`.

        Returns:
            ``[B, S, 258]`` logits (float), plus the stats when asked. One host synchronisation per chunking step
            (the length of the next stage).
        """
        c = self.config
        n = c.n_stages
        b, s = tokens.shape
        h = self.embed(tokens)
        positions = torch.arange(s, device=tokens.device).expand(b, s)
        real = torch.ones_like(tokens, dtype=torch.bool)
        forced = tokens == BOS_BYTE
        forced[:, 0] = True
        stats = HNetStats(s, [], [], [], [], [], [], [], [], [])
        plans = []
        for i in range(n - 1):
            h = self.encoders[i](h)
            prob = self.routers[i](h, forced)
            boundary = (prob >= BOUNDARY_THRESHOLD) & real
            selected = boundary.sum(dim=1)
            mask = boundary
            if use_caps:
                mask = keep_first_boundaries(boundary, c.caps[i + 1])
            kept = mask.sum(dim=1)
            length = int(kept.max())  # host sync: the next stage runs at the batch's largest chunk count
            index, count = pooling_index(mask, length)
            segment, _ = segment_index(mask)
            next_real = torch.arange(length, device=tokens.device)[None, :] < count[:, None]
            # The rate of each chunk's EMA is its start's probability; padding resets (rate 1) and is never read.
            rate = torch.where(next_real, prob.gather(1, index), torch.ones_like(index, dtype=prob.dtype))
            plans.append((h, rate, segment, prob, boundary))
            for store, value in ((stats.positions, positions), (stats.real, real), (stats.forced, forced),
                                 (stats.prob, prob), (stats.boundary, boundary), (stats.selected, selected),
                                 (stats.kept, kept)):
                store.append(value)
            stats.lengths.append(length)
            stats.ratio_losses.append(ratio_loss(prob, boundary, real, c.target_ratios[i]))
            h = self.downs[i](h, index)
            positions = positions.gather(1, index)
            forced = forced.gather(1, index) & next_real
            real = next_real
        h = self.main(h)
        for i in reversed(range(n - 1)):
            skip, rate, segment, prob, boundary = plans[i]
            h = self.decoders[i](skip + self.dechunks[i](h, rate, segment, prob, boundary))
        logits = self.head(self.norm(h))
        if return_stats:
            return logits, stats
        return logits

    def chunk_starts(self, tokens: Tensor) -> list[Tensor]:
        """``[B, S]`` bool per chunking step: the byte positions that start a chunk of stage ``i+1``, every chunk
        kept (as evaluation and generation run)."""
        _, stats = self.forward(tokens, use_caps=False, return_stats=True)
        out = []
        for positions, boundary in zip(stats.positions, stats.boundary):
            # Entries sit at distinct bytes (padding at bytes that start no chunk at this step): no write collides.
            out.append(torch.zeros_like(tokens, dtype=torch.bool).scatter(1, positions, boundary))
        return out
