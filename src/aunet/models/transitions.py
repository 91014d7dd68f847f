"""Pooling and upsampling between AU-Net stages (P2, P4, P5, P9, P10 in docs/paper-conformance.md).

All index arithmetic is vectorised over the batch and sequence, with static output shapes and no host-device
synchronisation. Shapes: ``B`` batch, ``L`` length of the finer stage, ``L'`` length of the coarser stage
(its cap), ``Df`` / ``Dc`` widths of the finer / coarser stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_first_boundaries(mask: Tensor, cap: int) -> Tensor:
    """``mask`` ``[B, L]`` bool with only its first ``cap`` True entries per row kept (P5: truncate, never drop
    early)."""
    return mask & (mask.cumsum(dim=1) <= cap)


def pooling_index(mask: Tensor, out_len: int) -> tuple[Tensor, Tensor]:
    """Positions to pool: the boundaries in order, then the earliest non-boundary positions as padding.

    Args:
        mask: ``[B, L]`` bool, at most ``out_len`` True per row (see :func:`keep_first_boundaries`).
        out_len: coarse length ``L' <= L``.

    Returns:
        ``index`` ``[B, L']`` long (fine positions to gather) and ``count`` ``[B]`` long (real boundaries per row).
        Padding sits after every real entry, so causal attention at the coarse stage never lets a real entry see it.
    """
    b, length = mask.shape
    counts = mask.long().cumsum(dim=1)  # boundaries at or before each position
    total = counts[:, -1:]
    pos = torch.arange(length, device=mask.device).expand(b, length)
    # Boundary number c goes to slot c-1; the k-th non-boundary (k = pos - counts) goes after all boundaries.
    slot = torch.where(mask, counts - 1, total + pos - counts)
    index = torch.empty_like(slot).scatter_(1, slot, pos)
    return index[:, :out_len], total.squeeze(1)


def segment_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """For each fine position ``t``: the coarse entry it reads, and its offset within that segment (P2).

    Args:
        mask: ``[B, L]`` bool of kept boundaries with ``mask[:, 0]`` True.

    Returns:
        ``segment`` ``[B, L]``: index ``k`` of the most recent boundary ``p_k <= t`` (inclusive: the word vector
        pooled at "SAT " already serves the byte "SAT " itself, to predict "O"), and ``offset`` ``[B, L]``: ``t - p_k``.
    """
    b, length = mask.shape
    pos = torch.arange(length, device=mask.device).expand(b, length)
    segment = mask.long().cumsum(dim=1) - 1
    last_boundary = torch.where(mask, pos, torch.zeros_like(pos)).cummax(dim=1).values
    return segment, pos - last_boundary


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x`` ``[B, N, D]`` gathered along dim 1 by ``index`` ``[B, M]`` -> ``[B, M, D]``.

    One ``index_select`` of whole rows over the flattened batch: the same values as ``torch.gather`` with an index
    expanded over ``D``, but cheaper forward and backward on CPU (an index per row, not per element, and
    ``index_add`` instead of an element-wise ``scatter_add`` in the backward).
    """
    b, n, d = x.shape
    flat = (index + torch.arange(b, device=index.device).unsqueeze(1) * n).reshape(-1)
    return x.reshape(b * n, d).index_select(0, flat).view(b, index.shape[1], d)


class Downsample(nn.Module):
    """Pooling by selection: gather the boundary rows, RMSNorm, then a linear map to the next stage's width."""

    def __init__(self, fine_dim: int, coarse_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(fine_dim, eps=eps)
        self.proj = nn.Linear(fine_dim, coarse_dim, bias=False)

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        """``x`` ``[B, L, Df]``, ``index`` ``[B, L']`` -> ``[B, L', Dc]``."""
        return self.proj(self.norm(gather_rows(x, index)))


class Upsample(nn.Module):
    """Coarse vectors back to fine positions (P10).

    Modes:
        ``multilinear``: ``W_shared c_k + W_(offset mod n_offsets) c_k`` (the paper's default).
        ``repeat``: ``W_shared c_k`` at every position of the segment.
        ``simple``: ``W_shared c_k`` at the boundary position itself, zero elsewhere.

    Multilinear has two exact implementations of ``(W_shared + W_offset) c``. On CPU (eager) the fine positions are
    grouped by offset and each group takes one matmul with its own fused matrix, as the official code does: this
    costs one projection per fine position, and the group sizes need a host synchronisation, which a CPU does not
    mind. On an accelerator, and under ``torch.compile``, every offset's projection of every coarse vector is
    computed in one matmul and the right row gathered per fine position: sync-free and static in shape, at
    ``n_offsets * L' / L`` times the FLOPs (4x at the byte transition of the CPU presets, 10x deeper).
    """

    grouped_on_cpu = True  # False: the static form everywhere (what ``flops_report`` counts)

    def __init__(self, coarse_dim: int, fine_dim: int, mode: str, n_offsets: int, eps: float) -> None:
        super().__init__()
        self.mode, self.n_offsets, self.fine_dim = mode, n_offsets, fine_dim
        self.n_maps = 1 + n_offsets if mode == "multilinear" else 1
        self.norm = nn.RMSNorm(coarse_dim, eps=eps)
        # Output rows: [shared | offset 0 | ... | offset n-1], each block fine_dim wide.
        self.proj = nn.Linear(coarse_dim, self.n_maps * fine_dim, bias=False)

    def forward(self, coarse: Tensor, segment: Tensor, offset: Tensor, boundary: Tensor) -> Tensor:
        """``coarse`` ``[B, L', Dc]``; ``segment``, ``offset``, ``boundary`` ``[B, L]`` -> ``[B, L, Df]``."""
        if self.mode == "multilinear":
            grouped = self.grouped_on_cpu and coarse.device.type == "cpu" and not torch.compiler.is_compiling()
            return (self.multilinear_grouped if grouped else self.multilinear_gathered)(coarse, segment, offset)
        out = gather_rows(self.proj(self.norm(coarse)), segment)
        if self.mode == "simple":
            out = out * boundary.unsqueeze(-1).to(out.dtype)
        return out

    def _fused_weights(self) -> Tensor:
        """``[n_offsets, Df, Dc]``: ``W_shared + W_offset`` for each offset."""
        w = self.proj.weight.view(self.n_maps, self.fine_dim, -1)
        return w[1:] + w[:1]

    def multilinear_gathered(self, coarse: Tensor, segment: Tensor, offset: Tensor) -> Tensor:
        """Multilinear upsampling, static shapes: project every coarse vector with every offset's matrix, then
        gather row ``segment * n_offsets + offset mod n_offsets`` per fine position. Shapes as :meth:`forward`."""
        b, n_coarse, _ = coarse.shape
        fused = self._fused_weights().reshape(self.n_offsets * self.fine_dim, -1)
        y = F.linear(self.norm(coarse), fused).view(b, n_coarse * self.n_offsets, self.fine_dim)
        return gather_rows(y, segment * self.n_offsets + offset % self.n_offsets)

    def multilinear_grouped(self, coarse: Tensor, segment: Tensor, offset: Tensor) -> Tensor:
        """Multilinear upsampling, one projection per fine position: fine positions sorted by offset, one matmul per
        offset group. Shapes as :meth:`forward`; the same values as :meth:`multilinear_gathered`."""
        b, n_coarse, d_coarse = coarse.shape
        length = segment.shape[1]
        fused = self._fused_weights()
        offsets = (offset % self.n_offsets).reshape(-1)
        rows = (segment + torch.arange(b, device=segment.device).unsqueeze(1) * n_coarse).reshape(-1)
        order = torch.argsort(offsets, stable=True)
        sizes = torch.bincount(offsets, minlength=self.n_offsets).tolist()  # the host synchronisation
        inputs = self.norm(coarse).reshape(b * n_coarse, d_coarse).index_select(0, rows.index_select(0, order))
        groups = [F.linear(x, fused[o]) for o, x in enumerate(inputs.split(sizes)) if sizes[o]]
        projected = torch.cat(groups)  # rows in offset order; put them back in position order
        return projected.new_empty(b * length, self.fine_dim).index_copy(0, order, projected).view(b, length, -1)
