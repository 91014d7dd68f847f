"""Incremental decoding of an :class:`~aunet.models.hnet.HNet`: one KV cache per stack, the deeper stages only when a
chunk starts.

Appending one byte runs encoder 0 on it; router 0 compares its state with the previous byte's (the ``q`` map of
that byte is kept). When the byte starts a chunk, its state enters stage 1: encoder 1 and router 1 (two chunking
steps) or the main network run one position, recursively, and the smoothed output of that stage is updated by one
EMA step (:func:`~aunet.models.chunking.smooth_step`) and projected once. Every byte then reads the projection of
the latest chunk (the most recent start at or before it), adds its skip and runs decoder 0 for one position. The
straight-through confidence is exactly 1 in the forward pass, so it does not appear here.

Every boundary is kept (no caps), as in evaluation: the logits equal the uncapped training forward
(``use_caps=False``) of the whole sequence at every position (tested for 1 and 2 chunking steps). Batch size is 1:
sequences chunk differently, so their deeper stages run at different steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aunet.models.chunking import BOUNDARY_THRESHOLD, smooth_step, start_probability
from aunet.models.hnet import BOS_BYTE, HNet


class HNetCascade:
    """Incremental state of one HNet sequence (batch 1); feed it with :meth:`extend` (BOS first) or :meth:`step`.

    Attributes:
        lengths: positions so far at each stage (``lengths[0]`` = tokens fed).
        starts: per chunking step, the stage-``i`` positions that started a chunk (for display).
    """

    def __init__(self, model: HNet) -> None:
        self.model = model
        n = model.config.n_stages
        self.n_stages = n
        self.enc_caches = [stack.new_cache() for stack in model.encoders]
        self.dec_caches = [stack.new_cache() for stack in model.decoders]
        self.main_cache = model.main.new_cache()
        self.lengths = [0] * n
        self.last_q: list[Tensor | None] = [None] * (n - 1)  # q map of the previous stage-i position
        self.smoothed: list[Tensor | None] = [None] * (n - 1)  # EMA of stage i+1's outputs, [1, 1, D_{i+1}]
        self.projected: list[Tensor | None] = [None] * (n - 1)  # its projection to stage i's width, [1, 1, D_i]
        self.starts: list[list[int]] = [[] for _ in range(n - 1)]

    def _stage(self, i: int, x: Tensor, forced: bool) -> Tensor:
        """One new position of stage ``i`` (input ``x`` ``[1, 1, D_i]``) -> its output ``[1, 1, D_i]``."""
        model = self.model
        position = self.lengths[i]
        self.lengths[i] += 1
        if i == self.n_stages - 1:
            return model.main.forward_cached(x, self.main_cache)
        h = model.encoders[i].forward_cached(x, self.enc_caches[i])
        router = model.routers[i]
        q, k = router.q(h), router.k(h)
        previous = self.last_q[i]
        self.last_q[i] = q
        prob = 1.0 if forced or previous is None else float(start_probability(previous, k))
        if prob >= BOUNDARY_THRESHOLD:
            self.starts[i].append(position)
            out = self._stage(i + 1, model.downs[i].proj(model.downs[i].norm(h)), forced)
            self.smoothed[i] = smooth_step(self.smoothed[i], out, prob)
            self.projected[i] = model.dechunks[i].project(self.smoothed[i])
        return model.decoders[i].forward_cached(h + self.projected[i], self.dec_caches[i])

    @torch.no_grad()
    def step(self, token: int) -> Tensor:
        """Feed one byte id (a host integer); return its next-byte logits ``[258]``."""
        model = self.model
        forced = token == BOS_BYTE or self.lengths[0] == 0
        x = model.embed.weight[token].view(1, 1, -1)
        return model.head(model.norm(self._stage(0, x, forced)))[0, 0]

    @torch.no_grad()
    def extend(self, tokens: Tensor, levels: Tensor | None = None) -> Tensor:
        """Feed ``m`` new tokens ``[m]`` (BOS first in the first call) one by one; return their logits ``[m, 258]``.
        ``levels`` is ignored: boundaries are the router's."""
        rows = [self.step(int(t)) for t in tokens.tolist()]
        if not rows:
            return tokens.new_zeros((0, self.model.config.vocab_size), dtype=self.model.head.weight.dtype)
        return torch.stack(rows)
