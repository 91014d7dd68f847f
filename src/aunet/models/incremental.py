"""Incremental decoding: AU-Net's cascaded generation with one KV cache per stack, and the BPE baseline's.

Cascade (paper notes §8, pitfalls P8, P9). Appending one byte always runs the byte stage (encoder 0, decoder 0 and
the head). A deeper stage ``j`` runs only when the byte closes a segment of its level (level ``>= j``): encoder
``j`` (or the trunk) then gets one new position, and so does decoder ``j``. Every encoder, decoder and the trunk has
its own KV cache and its own position counter, which advances only when that stack runs, so RoPE positions are the
stage-local indices of training. Between stages the state is small:

* for transition ``i`` (stage ``i`` -> ``i+1``): the upsampling projection of the latest coarse output of stage
  ``i+1`` (all ``1 + n_offsets`` maps, computed once per coarse entry), and the stage-``i`` position of the boundary
  that created it, from which the offset of every later stage-``i`` position follows (``t - p_k``);
* nothing else: skips are consumed in the same call that produces them.

The same code processes a chunk of ``m`` new bytes at once (``m`` = prompt length for the prefill, 1 per generated
byte), so prefill and steps share one implementation. The result equals the training forward without caps
(``use_caps=False``) on the whole sequence, restricted to the new positions (tested for 1-4 stages and every
upsampling mode): pooling selects, upsampling reads the most recent boundary at or before each position
(inclusive), the final RMSNorm precedes the head, and attention uses the training window.

Batch size is 1: sequences of a batch pool different bytes, so their deeper stages would run at different steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aunet.models.aunet import AUNet
from aunet.models.bpe import BPETransformer
from aunet.models.layers import KVCache


class AUNetCascade:
    """Cascaded incremental state of one AU-Net sequence (batch 1).

    Feed the sequence with :meth:`extend`: first the prompt (BOS first), then one byte at a time. Position 0 of the
    sequence is forced to the top level (P3), as in training.

    Attributes:
        lengths: positions so far at each stage (``lengths[0]`` = tokens fed).
    """

    def __init__(self, model: AUNet) -> None:
        self.model = model
        n = model.config.n_stages
        self.n_stages = n
        self.enc_caches = [stack.new_cache() for stack in model.encoders]
        self.dec_caches = [stack.new_cache() for stack in model.decoders]
        self.trunk_cache = model.trunk.new_cache()
        self.lengths = [0] * n
        # Per transition i: upsampling projection of the latest stage-(i+1) output, [n_maps, D_i] (None before any),
        # and the stage-i position of the boundary it was pooled at.
        self.latest_up: list[Tensor | None] = [None] * (n - 1)
        self.segment_start: list[Tensor | int] = [0] * (n - 1)

    @torch.no_grad()
    def extend(self, tokens: Tensor, levels: Tensor | None = None) -> Tensor:
        """Feed ``m`` new tokens; return their next-byte logits.

        Args:
            tokens: ``[m]`` long, byte ids (BOS 256 first in the first call).
            levels: ``[m]`` integer levels of those bytes (:func:`aunet.splitting.compute_levels` on the growing
                byte buffer, which is append-stable); may be None for one stage.

        Returns:
            ``[m, 258]`` logits, equal to the uncapped training forward of the whole sequence at these positions.
        """
        model, n = self.model, self.n_stages
        m = tokens.shape[0]
        if m == 0:
            return tokens.new_zeros((0, model.config.vocab_size), dtype=model.head.weight.dtype)
        x = model.embed(tokens)[None]  # [1, m, D0]
        if n == 1:
            out = model.trunk.forward_cached(x, self.trunk_cache)
            self.lengths[0] += m
            return model.head(model.norm(out))[0]
        if levels is None:
            raise ValueError(f"an AU-Net with {n} stages needs levels; compute them with aunet.splitting")
        lv = levels.to(device=tokens.device, dtype=torch.long)
        if self.lengths[0] == 0:
            lv = lv.clone()
            lv[0] = n - 1  # P3: the first position is pooled at every transition

        # Contracting path over the new positions of each stage; a stage without new positions stops it.
        skips: list[Tensor] = []
        masks: list[Tensor] = []
        starts = list(self.lengths)
        for i in range(n - 1):
            if x.shape[1] == 0:
                break
            h = model.encoders[i].forward_cached(x, self.enc_caches[i])  # [1, m_i, D_i]
            self.lengths[i] += h.shape[1]
            skips.append(h)
            mask = lv > i  # [m_i]: which new stage-i positions close a stage-(i+1) segment
            masks.append(mask)
            index = mask.nonzero().squeeze(1)
            x = model.downs[i](h, index[None])  # [1, m_{i+1}, D_{i+1}]
            lv = lv[index]
        out = x  # new outputs of the deepest stage reached (empty when no byte got that far)
        if len(skips) == n - 1 and x.shape[1]:
            out = model.trunk.forward_cached(x, self.trunk_cache)
            self.lengths[n - 1] += x.shape[1]

        # Expanding path: `out` holds the new outputs of stage i+1, in the order of their boundaries.
        for i in reversed(range(len(skips))):
            mask = masks[i]
            up = model.ups[i]
            table = up.proj(up.norm(out[0])).view(out.shape[1], up.n_maps, up.fine_dim)  # [m_{i+1}, n_maps, D_i]
            latest = self.latest_up[i]
            if latest is None:  # first call: position 0 is a boundary, so row 0 is never read
                latest = table.new_zeros(table.shape[1:])
            table = torch.cat([latest[None], table], dim=0)  # row 0: the latest entry of earlier calls
            count = mask.long().cumsum(0)  # new boundaries at or before each new position = row in `table`
            pos = starts[i] + torch.arange(mask.shape[0], device=mask.device)
            last = torch.where(mask, pos, torch.full_like(pos, -1)).cummax(0).values
            last = torch.where(last < 0, self.segment_start[i], last)
            offset = pos - last  # t - p_k, 0 at the boundary itself (P2)
            rows = table[count]  # [m_i, n_maps, D_i]: the most recent coarse entry at or before each position
            if up.mode == "multilinear":
                which = (1 + offset % up.n_offsets)[:, None, None].expand(-1, 1, up.fine_dim)
                upsampled = rows[:, 0] + rows.gather(1, which)[:, 0]
            elif up.mode == "simple":
                upsampled = rows[:, 0] * (offset == 0)[:, None].to(rows.dtype)
            else:
                upsampled = rows[:, 0]
            if out.shape[1]:
                self.latest_up[i] = table[-1]
                self.segment_start[i] = last[-1]  # a 0-d tensor: no host synchronisation
            out = model.decoders[i].forward_cached(skips[i] + upsampled[None], self.dec_caches[i])
        return model.head(model.norm(out))[0]


class BPEIncremental:
    """Incremental state of one BPE-transformer sequence (batch 1): one KV cache."""

    def __init__(self, model: BPETransformer) -> None:
        self.model = model
        self.cache: KVCache = model.trunk.new_cache()

    @property
    def length(self) -> int:
        return self.cache.length

    @torch.no_grad()
    def extend(self, tokens: Tensor, levels: Tensor | None = None) -> Tensor:
        """``tokens`` ``[m]`` -> next-token logits ``[m, vocab_size]`` (``levels`` is ignored)."""
        m = self.model
        return m.head(m.norm(m.trunk.forward_cached(m.embed(tokens)[None], self.cache)))[0]


def incremental_state(model: AUNet | BPETransformer) -> AUNetCascade | BPEIncremental:
    """The incremental decoder for ``model``."""
    if isinstance(model, AUNet):
        return AUNetCascade(model)
    if isinstance(model, BPETransformer):
        return BPEIncremental(model)
    raise TypeError(f"no incremental decoding for {type(model).__name__}")
