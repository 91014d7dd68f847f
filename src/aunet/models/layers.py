"""Transformer blocks shared by every AU-Net stage and the BPE baseline.

Pre-norm RMSNorm, rotary position embeddings on stage-local positions, causal (optionally sliding-window) attention
through ``scaled_dot_product_attention``, SwiGLU feed-forward. A stack has no final norm: the model applies one
before its output head. Shapes: ``B`` batch, ``S`` sequence length of the stage, ``D`` width, ``H`` heads,
``Dh`` head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotary_tables(seq_len: int, head_dim: int, theta: float,
                  device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Rotary tables for positions ``0..seq_len-1``, each ``[S, Dh]`` float32, in the form :func:`apply_rotary` uses:
    ``cos`` repeated over both halves of a head, ``sin`` negated on the first half (pairs are (first half, second
    half) of each head)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float64), inv_freq)
    cos, sin = angles.cos().float(), angles.sin().float()
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``[B, S, ..., Dh]`` by position; ``cos``/``sin`` ``[S, ..., Dh]`` from :func:`rotary_tables`
    broadcast over the middle dimensions (heads).

    Pair ``(x1, x2)`` (first and second half of a head) becomes ``(x1 cos - x2 sin, x2 cos + x1 sin)``. Swapping the
    halves with one ``roll`` and folding the sign into the table gives the same floats in three elementwise ops
    instead of four products, two sums and a concatenation: fewer passes over memory, which is what elementwise work
    costs in a narrow byte stage.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def sliding_window_mask(seq_len: int, window: int, device: torch.device | None = None) -> Tensor:
    """``[S, S]`` bool, True where query ``i`` may attend key ``j``: ``0 <= i - j < window``."""
    pos = torch.arange(seq_len, device=device)
    delta = pos[:, None] - pos[None, :]
    return (delta >= 0) & (delta < window)


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Causal attention where query ``i`` sees keys ``i - window < j <= i``, in blocks of ``window`` positions.

    ``q``, ``k``, ``v`` ``[B, H, S, Dh]`` -> ``[B, H, S, Dh]``. The sequence is cut into blocks of ``window``; each
    block's queries attend to the previous block and their own (2 * window keys, the out-of-window ones masked),
    so the work grows as ``S * window`` instead of ``S^2`` (an explicit ``[S, S]`` mask would compute every pair).
    The first block has no predecessor and runs as plain causal attention. Exact: every query sees the same keys.
    """
    b, h, s, d = q.shape
    n_blocks = -(-s // window)
    pad = n_blocks * window - s  # padding at the end is in the future of every real query
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    qb, kb, vb = (t.view(b, h, n_blocks, window, d) for t in (q, k, v))
    first = F.scaled_dot_product_attention(qb[:, :, 0], kb[:, :, 0], vb[:, :, 0], is_causal=True)
    if n_blocks == 1:
        return first[:, :, :s]

    def rows(t: Tensor, length: int) -> Tensor:  # [B, H, n-1, L, Dh] -> [B * (n-1), H, L, Dh]
        return t.permute(0, 2, 1, 3, 4).reshape(b * (n_blocks - 1), h, length, d)

    keys = rows(torch.cat([kb[:, :, :-1], kb[:, :, 1:]], dim=3), 2 * window)
    values = rows(torch.cat([vb[:, :, :-1], vb[:, :, 1:]], dim=3), 2 * window)
    i = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(2 * window, device=q.device)[None, :]
    mask = (j > i) & (j <= i + window)  # key j of [previous | own] block, seen from query i of the own block
    rest = F.scaled_dot_product_attention(rows(qb[:, :, 1:], window), keys, values, attn_mask=mask)
    rest = rest.view(b, n_blocks - 1, h, window, d).permute(0, 2, 1, 3, 4)
    return torch.cat([first.unsqueeze(2), rest], dim=2).reshape(b, h, n_blocks * window, d)[:, :, :s]


class KVCache:
    """Keys and values of one :class:`TransformerStack`, for incremental decoding (batch ``B``, ``H`` heads).

    ``keys[l]``/``values[l]`` ``[B, H, capacity, Dh]`` hold the rotated keys and the values of layer ``l`` for
    stage-local positions ``0..length-1``; the capacity doubles when full, so appending is amortised O(1). The whole
    history is kept even with a sliding window (attention only reads the last ``window`` keys), which keeps the code
    simple at the price of memory linear in the length. Buffers start zeroed: a static-shape step attends over the
    whole capacity with a mask, and masked garbage (a NaN) would still poison its weighted sum.
    """

    def __init__(self, n_layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.length = 0

    @property
    def capacity(self) -> int:
        """Positions the buffers hold before they must grow (0 before the first store)."""
        return self.keys[0].shape[2] if self.keys[0] is not None else 0

    def _grow(self, layer: int, capacity: int, keep: int) -> None:
        buf_k, buf_v = self.keys[layer], self.values[layer]
        shape = (buf_k.shape[0], buf_k.shape[1], capacity, buf_k.shape[3])  # type: ignore[union-attr]
        new_k, new_v = buf_k.new_zeros(shape), buf_v.new_zeros(shape)  # type: ignore[union-attr]
        new_k[:, :, :keep] = buf_k[:, :, :keep]  # type: ignore[index]
        new_v[:, :, :keep] = buf_v[:, :, :keep]  # type: ignore[index]
        self.keys[layer], self.values[layer] = new_k, new_v

    def reserve(self, capacity: int) -> None:
        """Grow every layer's buffers to hold at least ``capacity`` positions (buffers must exist: store first)."""
        for layer in range(len(self.keys)):
            if self.keys[layer] is None:
                raise ValueError("reserve() needs stored keys to take the batch, heads and head size from")
            if self.keys[layer].shape[2] < capacity:  # type: ignore[union-attr]
                self._grow(layer, capacity, self.length)

    def store(self, layer: int, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write ``k``, ``v`` ``[B, H, n, Dh]`` at positions ``start..start+n-1`` of ``layer``; return views of all
        keys and values so far, ``[B, H, start+n, Dh]``."""
        end = start + k.shape[2]
        if self.keys[layer] is None:
            shape = (k.shape[0], k.shape[1], max(end, 16), k.shape[3])
            self.keys[layer], self.values[layer] = k.new_zeros(shape), v.new_zeros(shape)
        elif self.keys[layer].shape[2] < end:  # type: ignore[union-attr]
            self._grow(layer, max(end, 2 * self.keys[layer].shape[2]), start)  # type: ignore[union-attr]
        buf_k, buf_v = self.keys[layer], self.values[layer]
        buf_k[:, :, start:end] = k  # type: ignore[index]
        buf_v[:, :, start:end] = v  # type: ignore[index]
        return buf_k[:, :, :end], buf_v[:, :, :end]  # type: ignore[index]


def cached_attention(q: Tensor, keys: Tensor, values: Tensor, start: int, window: int | None) -> Tensor:
    """Attention of ``n`` new queries at positions ``start..start+n-1`` over all keys ``0..start+n-1``.

    ``q`` ``[B, H, n, Dh]``, ``keys``/``values`` ``[B, H, start+n, Dh]`` -> ``[B, H, n, Dh]``. Query ``i`` sees keys
    ``i - window < j <= i`` exactly as in training (:func:`sliding_window_mask`). When nothing is cached yet the
    training kernels are used, so a prefill computes what the training forward computes.
    """
    n = q.shape[2]
    if start == 0:
        if window is None or window >= n:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        return sliding_window_attention(q, keys, values, window)
    # Keys older than the window of the first new query are never read: slice them off before the matmul.
    lo = 0 if window is None else max(0, start - window + 1)
    keys, values = keys[:, :, lo:], values[:, :, lo:]
    if n == 1:  # one query sees every key of the slice
        return F.scaled_dot_product_attention(q, keys, values)
    qpos = torch.arange(start, start + n, device=q.device)[:, None]
    kpos = torch.arange(lo, start + n, device=q.device)[None, :]
    mask = kpos <= qpos
    if window is not None:
        mask &= kpos > qpos - window
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE; no biases, as many key/value heads as query heads."""

    def __init__(self, dim: int, head_dim: int) -> None:
        super().__init__()
        self.n_heads = dim // head_dim
        self.head_dim = head_dim
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def _heads(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rotated queries, rotated keys and values, each ``[B, H, S, Dh]``, from ``x`` ``[B, S, D]``.

        ``split`` and ``unbind`` rather than indexing: their backward concatenates the three gradients in one pass,
        where slices of ``qkv`` would each zero-fill and add a gradient of the whole ``qkv`` tensor.
        """
        b, s, _ = x.shape
        qk, v = self.wqkv(x).view(b, s, 3, self.n_heads, self.head_dim).split([2, 1], dim=2)
        q, k = apply_rotary(qk, cos[:, None, None], sin[:, None, None]).unbind(2)  # queries and keys in one pass
        return q.transpose(1, 2), k.transpose(1, 2), v.squeeze(2).transpose(1, 2)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None) -> Tensor:
        """``x`` ``[B, S, D]`` -> ``[B, S, D]``; ``cos``/``sin`` ``[S, Dh]``; ``window``: sliding-window size, or
        None for plain causal."""
        b, s, d = x.shape
        q, k, v = self._heads(x, cos, sin)
        if window is None or window >= s:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = sliding_window_attention(q, k, v, window)
        return self.wo(out.transpose(1, 2).reshape(b, s, d))

    def forward_cached(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None, cache: KVCache, layer: int,
                       start: int) -> Tensor:
        """:meth:`forward` for ``n`` new positions ``start..start+n-1`` of a sequence whose earlier keys and values
        are in ``cache`` (which this call extends). ``x`` ``[B, n, D]``; ``cos``/``sin`` ``[n, Dh]`` of the new
        positions."""
        b, s, d = x.shape
        q, k, v = self._heads(x, cos, sin)
        keys, values = cache.store(layer, k, v, start)
        out = cached_attention(q, keys, values, start, window)
        return self.wo(out.transpose(1, 2).reshape(b, s, d))

    def forward_static(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None, keys: Tensor, values: Tensor,
                       pos: Tensor, key_pos: Tensor) -> Tensor:
        """One new position, static in shape: its key and value are written into ``keys``/``values``
        ``[1, H, C, Dh]`` at ``pos`` ``[1]`` (a device tensor), and its query attends over all ``C`` slots with a
        mask of the causal window, so nothing here depends on a host value and the step can be replayed from a CUDA
        graph. ``x`` ``[1, 1, D]``; ``cos``/``sin`` ``[1, Dh]`` at ``pos``; ``key_pos`` ``[C]`` = ``arange(C)``.
        The same function as :meth:`forward_cached` for one position (slots past ``pos`` are masked)."""
        b, s, d = x.shape
        q, k, v = self._heads(x, cos, sin)
        keys.index_copy_(2, pos, k)
        values.index_copy_(2, pos, v)
        visible = key_pos <= pos
        if window is not None:
            visible &= key_pos > pos - window
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible[None, :])  # [1 query, C keys]
        return self.wo(out.transpose(1, 2).reshape(b, s, d))


class SwiGLU(nn.Module):
    """``w2(silu(x W1) * (x W3))``, with W1 and W3 fused into one matmul."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).split(self.hidden, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``."""

    def __init__(self, dim: int, head_dim: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(dim, eps=eps)
        self.attn = Attention(dim, head_dim)
        self.ffn_norm = nn.RMSNorm(dim, eps=eps)
        self.ffn = SwiGLU(dim, ffn_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, window)
        return x + self.ffn(self.ffn_norm(x))

    def forward_cached(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None, cache: KVCache, layer: int,
                       start: int) -> Tensor:
        """:meth:`forward` for new positions, reading and extending ``cache`` (see :meth:`Attention.forward_cached`)."""
        x = x + self.attn.forward_cached(self.attn_norm(x), cos, sin, window, cache, layer, start)
        return x + self.ffn(self.ffn_norm(x))

    def forward_static(self, x: Tensor, cos: Tensor, sin: Tensor, window: int | None, keys: Tensor, values: Tensor,
                       pos: Tensor, key_pos: Tensor) -> Tensor:
        """:meth:`forward_cached` for one position, static in shape (see :meth:`Attention.forward_static`)."""
        x = x + self.attn.forward_static(self.attn_norm(x), cos, sin, window, keys, values, pos, key_pos)
        return x + self.ffn(self.ffn_norm(x))


class TransformerStack(nn.Module):
    """``n_layers`` blocks over one stage's sequence; positions are the stage-local indices ``0..S-1``.

    Args:
        window: sliding-window size (a query sees itself and the ``window - 1`` keys before it), or None for full
            causal attention. A window that covers the whole sequence uses the plain causal kernel; a shorter one
            runs block-wise (:func:`sliding_window_attention`).
        max_len: length up to which rotary tables are precomputed; longer inputs extend them on the fly.
    """

    def __init__(self, dim: int, n_layers: int, head_dim: int, ffn_dim: int, window: int | None, max_len: int,
                 rope_theta: float, eps: float) -> None:
        super().__init__()
        self.dim, self.head_dim, self.window, self.rope_theta = dim, head_dim, window, rope_theta
        self.layers = nn.ModuleList(Block(dim, head_dim, ffn_dim, eps) for _ in range(n_layers))
        cos, sin = rotary_tables(max_len, head_dim, rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def _rotary(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if seq_len > self.rope_cos.shape[0]:
            cos, sin = rotary_tables(seq_len, self.head_dim, self.rope_theta, device)
            self.rope_cos, self.rope_sin = cos, sin
        return self.rope_cos[:seq_len], self.rope_sin[:seq_len]

    def forward(self, x: Tensor) -> Tensor:
        """``[B, S, D]`` -> ``[B, S, D]`` (no final norm)."""
        cos, sin = self._rotary(x.shape[1], x.device)
        for layer in self.layers:
            x = layer(x, cos, sin, self.window)
        return x

    def new_cache(self) -> KVCache:
        """An empty KV cache for :meth:`forward_cached`."""
        return KVCache(len(self.layers))

    def forward_cached(self, x: Tensor, cache: KVCache) -> Tensor:
        """Outputs at the next ``n`` positions of a sequence whose earlier positions are in ``cache``.

        ``x`` ``[B, n, D]`` -> ``[B, n, D]``. Positions are stage-local and continue from ``cache.length`` (P8);
        attention uses the same window as training. Equal to :meth:`forward` over the whole sequence, restricted
        to the new positions.
        """
        start, n = cache.length, x.shape[1]
        end = start + n
        if end > self.rope_cos.shape[0]:  # grow geometrically: one token at a time must not rebuild the tables
            self._rotary(max(end, 2 * self.rope_cos.shape[0]), x.device)
        cos, sin = self.rope_cos[start:end], self.rope_sin[start:end]
        for i, layer in enumerate(self.layers):
            x = layer.forward_cached(x, cos, sin, self.window, cache, i, start)
        cache.length = end
        return x

    def rotary_for(self, length: int) -> tuple[Tensor, Tensor]:
        """The whole rotary tables, grown (geometrically) to cover at least ``length`` positions."""
        if length > self.rope_cos.shape[0]:
            self._rotary(max(length, 2 * self.rope_cos.shape[0]), self.rope_cos.device)
        return self.rope_cos, self.rope_sin

    def step_static(self, x: Tensor, cache: KVCache, pos: Tensor, key_pos: Tensor, cos: Tensor,
                    sin: Tensor) -> Tensor:
        """The output at position ``pos`` of a sequence whose earlier positions are in ``cache``, static in shape:
        ``x`` ``[1, 1, D]`` -> ``[1, 1, D]``; ``pos`` ``[1]`` long on the device; ``key_pos`` ``[C]`` =
        ``arange(cache.capacity)``; ``cos``/``sin`` the tables of :meth:`rotary_for` (at least ``C`` rows).

        Equal to :meth:`forward_cached` on one position, but every shape is fixed by the cache's capacity and the
        position is read on the device, so :class:`~aunet.models.incremental.GraphedStackStep` can capture it once
        and replay it for every later position. Does not advance ``cache.length`` (the caller does).
        """
        cos_at, sin_at = cos.index_select(0, pos), sin.index_select(0, pos)
        for i, layer in enumerate(self.layers):
            x = layer.forward_static(x, cos_at, sin_at, self.window, cache.keys[i], cache.values[i], pos,
                                     key_pos)  # type: ignore[arg-type]
        return x


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: truncated normal (+-3 sigma) with sigma = fan_in^-0.5 for every linear map,
    sigma = width^-0.5 for embeddings, unit RMSNorm gains, no depth-dependent scaling."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            std = m.in_features**-0.5
            nn.init.trunc_normal_(m.weight, std=std, a=-3 * std, b=3 * std)
        elif isinstance(m, nn.Embedding):
            std = m.embedding_dim**-0.5
            nn.init.trunc_normal_(m.weight, std=std, a=-3 * std, b=3 * std)
        elif isinstance(m, nn.RMSNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
