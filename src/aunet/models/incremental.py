"""Incremental decoding: AU-Net's cascaded generation with one KV cache per stack, and the BPE baseline's.

Cascade (P8, P9 in docs/paper-conformance.md). Appending one byte always runs the byte stage (encoder 0, decoder 0 and
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

Generating one byte at a time, :meth:`AUNetCascade.step` takes the byte and its level as host integers (the caller
computed the level on the host anyway), so which stages run and every upsampling offset are known without asking the
device; each stack's one-position step is then either :meth:`TransformerStack.forward_cached` or, on a GPU, the replay
of a CUDA graph (:class:`GraphedStackStep`): a step of the byte stage is a few dozen small kernels whose launches,
not their arithmetic, set the speed of eager decoding there.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from aunet.models.aunet import AUNet
from aunet.models.bpe import BPETransformer
from aunet.models.hnet import HNet
from aunet.models.hnet_cascade import HNetCascade
from aunet.models.layers import KVCache, TransformerStack


class GraphedStackStep:
    """One-position steps of a :class:`TransformerStack` over its :class:`KVCache`, replayed from a CUDA graph.

    The first call (and any call after the cache outgrew the captured capacity, or was reallocated by a chunked
    :meth:`~TransformerStack.forward_cached`) reserves capacity for twice the current length, warms the static step
    up on a side stream and captures it; later calls copy the input into the graph's input buffer, set the position
    on the device and replay. Each call computes exactly :meth:`TransformerStack.step_static` (tested equal to
    :meth:`~TransformerStack.forward_cached`); re-running a step is harmless, since it only writes its own position.
    """

    ALIGN = 64  # capacities in multiples of this: aligned masks keep the fused attention kernels

    def __init__(self, stack: TransformerStack, cache: KVCache) -> None:
        self.stack, self.cache = stack, cache
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_keys: Tensor | None = None
        self.captures = 0

    def _stale(self, start: int) -> bool:
        return (self.graph is None or start >= self.cache.capacity
                or self.cache.keys[0] is not self.captured_keys)

    def _capture(self, x: Tensor, start: int) -> None:
        capacity = -(-max(2 * (start + 1), start + self.ALIGN) // self.ALIGN) * self.ALIGN
        self.cache.reserve(capacity)
        device = x.device
        self.cos, self.sin = self.stack.rotary_for(capacity)  # held here: the graph reads these very tensors
        self.key_pos = torch.arange(capacity, device=device)
        self.pos = torch.tensor([start], device=device)
        self.x = x.clone()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the graph: lazy initialisation must not be captured
            self.stack.step_static(self.x, self.cache, self.pos, self.key_pos, self.cos, self.sin)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self.stack.step_static(self.x, self.cache, self.pos, self.key_pos, self.cos, self.sin)
        self.captured_keys = self.cache.keys[0]
        self.captures += 1

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` ``[1, 1, D]`` at position ``cache.length`` -> its output ``[1, 1, D]``; advances the cache."""
        start = self.cache.length
        if self._stale(start):
            self._capture(x, start)
        else:
            self.x.copy_(x)
        self.pos.fill_(start)
        self.graph.replay()  # type: ignore[union-attr]
        self.cache.length = start + 1
        return self.out.clone()  # the graph's output buffer is overwritten by the next replay


class AUNetCascade:
    """Cascaded incremental state of one AU-Net sequence (batch 1).

    Feed the sequence with :meth:`extend`: first the prompt (BOS first), then one byte at a time. Position 0 of the
    sequence is forced to the top level (P3), as in training.

    Attributes:
        lengths: positions so far at each stage (``lengths[0]`` = tokens fed).
    """

    def __init__(self, model: AUNet, graphs: bool | None = None) -> None:
        """``graphs``: replay single-byte steps of each stack from CUDA graphs (default: when the model is on a
        GPU)."""
        self.model = model
        n = model.config.n_stages
        device = model.head.weight.device
        self.graphs = device.type == "cuda" if graphs is None else graphs
        if self.graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.n_stages = n
        self.enc_caches = [stack.new_cache() for stack in model.encoders]
        self.dec_caches = [stack.new_cache() for stack in model.decoders]
        self.trunk_cache = model.trunk.new_cache()
        self.lengths = [0] * n
        # Per transition i: upsampling projection of the latest stage-(i+1) output, [n_maps, D_i] (None before any),
        # and the stage-i position of the boundary it was pooled at.
        self.latest_up: list[Tensor | None] = [None] * (n - 1)
        self.segment_start: list[Tensor | int] = [0] * (n - 1)
        self._steppers: dict[int, GraphedStackStep] = {}

    def _stack_step(self, stack: TransformerStack, cache: KVCache, x: Tensor) -> Tensor:
        """One new position of ``stack``: ``x`` ``[1, 1, D]`` -> ``[1, 1, D]``, from a CUDA graph when enabled.

        A graph that cannot be captured (a driver or library without graph support for some kernel) turns graphs
        off for this sequence with a warning: the eager step computes the same thing, and a failed capture leaves the
        cache as the eager step expects it (only this position's keys written, the length not advanced)."""
        if self.graphs:
            stepper = self._steppers.get(id(cache))
            if stepper is None:
                stepper = self._steppers[id(cache)] = GraphedStackStep(stack, cache)
            try:
                return stepper(x)
            except RuntimeError as exc:
                warnings.warn(f"CUDA graph capture failed ({str(exc).splitlines()[0][:200]}); generating eagerly",
                              RuntimeWarning, stacklevel=2)
                self.graphs = False
        return stack.forward_cached(x, cache)

    @property
    def graph_captures(self) -> int:
        """CUDA graphs captured so far (one per stack, plus one per capacity growth)."""
        return sum(s.captures for s in self._steppers.values())

    @torch.no_grad()
    def step(self, token: int, level: int) -> Tensor:
        """Feed one byte after the prompt; return its next-byte logits ``[258]``.

        Args:
            token: the byte (0..255) as a host integer.
            level: its level (:func:`aunet.splitting.compute_levels` on the grown buffer), a host integer: the
                byte closes segments of stages ``1..level``, so stages ``0..min(level, n-1)`` get a new position.

        The same logits as :meth:`extend` on ``[token]``, ``[level]``, without any host-device synchronisation:
        which stages run and each upsampling offset follow from host integers.
        """
        model, n = self.model, self.n_stages
        if self.lengths[0] == 0:
            raise ValueError("step() continues a sequence: feed the prompt (BOS first) with extend()")
        x = model.embed.weight[token].view(1, 1, -1)
        if n == 1:
            out = self._stack_step(model.trunk, self.trunk_cache, x)
            self.lengths[0] += 1
            return model.head(model.norm(out))[0, 0]
        reached = min(max(level, 0), n - 1)  # the deepest stage that gets a new position
        skips: list[Tensor] = []
        for i in range(reached + 1):
            if i < n - 1:
                x = self._stack_step(model.encoders[i], self.enc_caches[i], x)
                skips.append(x)
                if i < reached:  # pooling one selected row: the gather is the row itself
                    x = model.downs[i].proj(model.downs[i].norm(x))
            else:
                x = self._stack_step(model.trunk, self.trunk_cache, x)
            self.lengths[i] += 1
        out = x  # the new output of stage `reached`
        for i in reversed(range(min(reached, n - 2) + 1)):  # decoders of the stages that got a position
            up = model.ups[i]
            position = self.lengths[i] - 1  # stage-local position of this byte's entry at stage i
            if i < reached:  # stage i+1 got a new entry at this very position: a new table, offset 0 (P2)
                self.latest_up[i] = up.proj(up.norm(out[0, 0])).view(up.n_maps, up.fine_dim)
                self.segment_start[i] = position
            start = self.segment_start[i]
            if isinstance(start, Tensor):  # set by extend() without a sync; read once here
                start = self.segment_start[i] = int(start)
            offset = position - start
            table = self.latest_up[i]
            if up.mode == "multilinear":
                upsampled = table[0] + table[1 + offset % up.n_offsets]  # type: ignore[index]
            elif up.mode == "simple":
                upsampled = table[0] * float(offset == 0)  # type: ignore[index]
            else:
                upsampled = table[0]  # type: ignore[index]
            out = self._stack_step(model.decoders[i], self.dec_caches[i], skips[i] + upsampled)
        return model.head(model.norm(out))[0, 0]

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


def incremental_state(model: AUNet | HNet | BPETransformer) -> AUNetCascade | HNetCascade | BPEIncremental:
    """The incremental decoder for ``model``."""
    if isinstance(model, AUNet):
        return AUNetCascade(model)
    if isinstance(model, HNet):
        return HNetCascade(model)
    if isinstance(model, BPETransformer):
        return BPEIncremental(model)
    raise TypeError(f"no incremental decoding for {type(model).__name__}")
