"""Learned chunk boundaries between the stages of an :class:`~aunet.models.hnet.HNet` (H-Net's dynamic chunking, in
our own words and code).

* **Routing.** Two square linear maps ``q`` and ``k`` of a stage's encoder output, both starting as the identity.
  Position ``t`` starts a new chunk with probability ``(1 - cos(q(h[t-1]), k(h[t]))) / 2``: a position whose state
  turns away from the one before it begins something new. Forced positions (position 0, which has no predecessor,
  and the first position of every document) have probability 1. A chunk starts where the probability is at least
  1/2. Position ``t``'s decision reads ``h[t-1]`` and ``h[t]`` only, both causal, so it never depends on later bytes.
* **Chunking** selects the encoder outputs at chunk starts (:func:`~aunet.models.transitions.pooling_index`, padding
  after the real chunks), as AU-Net pools: the chunk vector has read its whole prefix up to the chunk's first byte.
* **Dechunking** (:class:`Dechunk`): the next stage's output per chunk is smoothed by an exponential moving average
  whose rate is the chunk's boundary probability (a confident start keeps its own output, a doubtful one leans on the
  chunk before it), projected back to the finer width, repeated over the positions of its chunk (the most recent
  chunk start at or before each position, as AU-Net's upsampling), and multiplied by a straight-through confidence
  that is exactly 1 in the forward pass and carries the router's gradient in the backward pass.
* **Ratio loss** (:func:`ratio_loss`): pulls the share of chunk starts toward ``1 / N`` for a target compression N.

The EMA is computed in its parallel form, one ``[L', L']`` lower-triangular matrix product per sequence (a scan
written as a matmul: no custom kernel, no ``mamba_ssm``); :func:`smooth_step` is the recurrence generation uses, and
the two agree (tested). Shapes: ``B`` batch, ``L`` positions of the finer stage, ``L'`` chunks, ``D`` width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aunet.models.transitions import gather_rows

BOUNDARY_THRESHOLD = 0.5
COSINE_EPS = 1e-8


def start_probability(q_prev: Tensor, k: Tensor) -> Tensor:
    """``(1 - cos(q_prev, k)) / 2`` over the last dimension, clamped to [0, 1]: ``[..., D]`` -> ``[...]``."""
    cos = F.cosine_similarity(q_prev, k, dim=-1, eps=COSINE_EPS)
    return ((1 - cos) / 2).clamp(0.0, 1.0)


class Router(nn.Module):
    """The routing module of one chunking step: chunk-start probabilities of a stage's positions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Both maps start as the identity: at initialisation the router compares the states themselves."""
        with torch.no_grad():
            nn.init.eye_(self.q.weight)
            nn.init.eye_(self.k.weight)

    def forward(self, h: Tensor, forced: Tensor) -> Tensor:
        """``h`` ``[B, L, D]``, ``forced`` ``[B, L]`` bool (True at position 0) -> probabilities ``[B, L]``."""
        q, k = self.q(h), self.k(h)
        rest = start_probability(q[:, :-1], k[:, 1:])
        prob = torch.cat([rest.new_ones(rest.shape[0], 1), rest], dim=1)
        return prob.masked_fill(forced, 1.0)  # a constant where forced: no gradient flows there


def smooth(z: Tensor, rate: Tensor) -> Tensor:
    """The EMA over chunks, ``out[k] = rate[k] z[k] + (1 - rate[k]) out[k-1]`` (``out[-1] = 0``), in parallel form.

    Args:
        z: ``[B, L', D]`` outputs of the coarser stage, one per chunk.
        rate: ``[B, L']`` boundary probability of each chunk's start, 1 at forced chunks (and padding).

    Returns:
        ``[B, L', D]``: ``out[k] = sum_{j <= k} W[k, j] z[j]`` with ``W[k, j] = rate[j] prod_{j < i <= k} (1 -
        rate[i])``. The products are sums of logs taken without subtraction (each ``W[k, j]`` sums only its own
        terms), so nothing overflows. A rate of exactly 1 makes every later product exactly 0: chunks are grouped
        between such resets and ``W`` is zeroed across groups, so the clamp that keeps the logarithm finite changes
        nothing there (and a document never leaks into the next through the EMA).
    """
    work = torch.promote_types(z.dtype, torch.float32)
    r = rate.to(work)
    n = r.shape[1]
    log_keep = torch.log((1 - r).clamp(min=torch.finfo(work).tiny))  # [B, L']; clamped entries get no gradient
    below = torch.ones(n, n, dtype=torch.bool, device=z.device).tril(-1)  # i > j
    # rows i, columns j: log_keep[i] where i > j, summed down the rows: sum over j < i <= k of log_keep[i]
    spread = log_keep.unsqueeze(-1).expand(-1, n, n).masked_fill(~below, 0.0)
    segment = spread.cumsum(dim=1)
    causal = torch.ones(n, n, dtype=torch.bool, device=z.device).tril()  # j <= k
    group = (r >= 1).cumsum(dim=1)
    same = group.unsqueeze(2) == group.unsqueeze(1)
    weights = torch.exp(segment.masked_fill(~causal, float("-inf"))) * r.unsqueeze(1)
    weights = weights * same.to(work)
    return torch.bmm(weights, z.to(work)).to(z.dtype)


def smooth_step(previous: Tensor | None, z: Tensor, rate: Tensor | float) -> Tensor:
    """One step of :func:`smooth`: the new chunk's smoothed output from the previous one (None before the first
    chunk, which is always forced: rate 1)."""
    if previous is None:
        return z * rate
    return rate * z + (1 - rate) * previous


def confidence_scale(prob: Tensor, boundary: Tensor) -> Tensor:
    """``[B, L]``: exactly 1 in the forward pass, with the gradient of ``c = p`` where a chunk starts and
    ``c = 1 - p`` elsewhere (straight-through): the decoder's loss reaches the router through every position."""
    c = torch.where(boundary, prob, 1 - prob)
    return 1 + (c - c.detach())


def ratio_loss(prob: Tensor, boundary: Tensor, real: Tensor, target: float) -> Tensor:
    """The load-balancing term of one chunking step (0-d).

    ``F``: share of the real positions that start a chunk (hard, no gradient); ``G``: their mean start probability.
    ``N / (N - 1) * ((N - 1) F G + (1 - F)(1 - G))`` is 1 when ``F = G = 1 / N`` and grows as the realized share
    moves away; its gradient lowers the probabilities while chunks are too many (``F > 1 / N``) and raises them while
    they are too few.
    """
    count = real.sum().clamp(min=1)
    f = (boundary & real).sum() / count
    g = (prob * real).sum() / count
    return target / (target - 1) * ((target - 1) * f * g + (1 - f) * (1 - g))


class Dechunk(nn.Module):
    """From the chunks of a coarser stage back to the positions of the finer one (see the module docstring)."""

    def __init__(self, coarse_dim: int, fine_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(coarse_dim, eps=eps)
        self.proj = nn.Linear(coarse_dim, fine_dim, bias=False)

    def project(self, smoothed: Tensor) -> Tensor:
        """``[..., Dc]`` smoothed chunk outputs -> ``[..., Df]``."""
        return self.proj(self.norm(smoothed))

    def forward(self, coarse: Tensor, rate: Tensor, segment: Tensor, prob: Tensor, boundary: Tensor) -> Tensor:
        """``coarse`` ``[B, L', Dc]``, ``rate`` ``[B, L']``; ``segment`` (the chunk each position reads), ``prob``,
        ``boundary`` ``[B, L]`` -> ``[B, L, Df]``."""
        rows = gather_rows(self.project(smooth(coarse, rate)), segment)
        return rows * confidence_scale(prob, boundary).unsqueeze(-1).to(rows.dtype)
