"""One FLOPs formula for every family (P13 in docs/paper-conformance.md).

Training FLOPs per input unit (a byte for AU-Net, a token for BPE) follow the paper's accounting::

    F = 6 * linear + attention
    linear    = sum_i n_i * r_i * (4 d_i^2 + 3 d_i f_i)  +  d_0 * V          (output head included)
    attention = sum_i 6 * d_i * S_i * n_i * w(S_i, W_i) * r_i

where stage ``i`` has width ``d_i``, SwiGLU size ``f_i``, sequence length ``S_i`` (its cap; ``S_0`` the byte
sequence), ``r_i = S_i / S_0`` (how many stage-``i`` positions there are per byte), ``n_i`` layers counted
(``2 * layers[i]`` for the encoder and decoder of a non-deepest stage, ``layers[i]`` for the deepest), window ``W_i``
and ``w(S, W) = W'(2S - W') / S^2`` with ``W' = min(S, W)`` the share of the causal mask a sliding window covers.
The BPE model is the one-stage case with ``S_0`` = its token sequence length and ``V`` its vocabulary.

As in the paper, the input embedding is not counted, the output head is (reported separately as ``head_share``),
attention is not halved for causality, and the contraction comes from the caps, not from measured boundary
counts. The pooling and upsampling projections are left out of ``flops_per_unit`` like the paper does, and are
reported on their own as ``transition_flops_per_unit`` so their cost stays visible: counted as the static form of
multilinear upsampling runs them (every offset map on the coarse sequence; GPUs and ``torch.compile``). Eager CPU
training groups bytes by offset and spends less on upsampling (see :class:`aunet.models.transitions.Upsample`).

The learned-chunking family (``hnet``) uses the same stage terms with ``S_i`` the length stage ``i`` runs at, and
adds ``routing_flops_per_unit`` to ``F`` (never counted for the other families, which have none): per chunking step,
the router's two square maps and cosine on every finer position, the ratio loss and the straight-through confidence
on every finer position, and the EMA over the chunks in the parallel form it runs in (an ``[S, S]`` matrix product,
like one attention product). Its chunk counts are learned: :func:`flops_report` charges the target ratios (planning,
``HNetConfig.planned_lengths``), :func:`hnet_flops` any realized lengths (training charges each step's). Its
chunking and dechunking projections are transitions, as AU-Net's pooling and upsampling are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aunet.models.config import AUNetConfig, BPEConfig, HNetConfig, ModelConfig


def window_fraction(seq_len: int, window: int | None) -> float:
    """Share of the ``S x S`` causal attention that a sliding window of ``window`` keys covers (1 for full)."""
    w = seq_len if window is None else min(seq_len, window)
    return w * (2 * seq_len - w) / seq_len**2


def layer_params(dim: int, ffn_dim: int) -> int:
    """Parameters of one block: attention ``4 d^2``, SwiGLU ``3 d f``, two RMSNorm gains."""
    return 4 * dim * dim + 3 * dim * ffn_dim + 2 * dim


@dataclass(frozen=True)
class StageFlops:
    """One stage's share, per input unit. ``layers_counted`` doubles non-deepest stages (encoder + decoder).
    ``seq_len`` is the stage's length per sequence (a cap; for learned chunking, planned or realized, not whole)."""

    stage: int
    dim: int
    ffn_dim: int
    seq_len: float
    ratio: float
    layers_counted: int
    window_fraction: float
    linear_flops: float
    attention_flops: float


@dataclass(frozen=True)
class FlopsReport:
    """Parameters and training FLOPs per input unit of one model config."""

    family: str
    unit: str
    seq_len: int
    params: int
    non_embedding_params: int
    embedding_params: int
    head_params: int
    transition_params: int
    flops_per_unit: float
    head_flops_per_unit: float
    attention_flops_per_unit: float
    transition_flops_per_unit: float
    head_share: float
    stages: tuple[StageFlops, ...]
    routing_flops_per_unit: float = 0.0  # learned chunking only: router, EMA, confidence, ratio loss (in the total)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stages"] = [dataclasses.asdict(s) for s in self.stages]
        return out

    def flops_per_sequence(self) -> float:
        return self.flops_per_unit * self.seq_len


def _stage_flops(stage: int, dim: int, ffn_dim: int, seq_len: float, seq_len0: int, layers_counted: int,
                 window: int | None) -> StageFlops:
    ratio = seq_len / seq_len0
    frac = window_fraction(seq_len, window) if seq_len > 0 else 1.0
    linear = 6.0 * layers_counted * ratio * (4 * dim * dim + 3 * dim * ffn_dim)
    attention = 6.0 * dim * seq_len * layers_counted * frac * ratio
    return StageFlops(stage, dim, ffn_dim, seq_len, ratio, layers_counted, frac, linear, attention)


def routing_flops_per_sequence(fine_dim: int, fine_len: float, coarse_dim: int, coarse_len: float) -> float:
    """Training FLOPs (forward and backward, 3x the forward) of one chunking step over one sequence: the router's
    ``q`` and ``k`` maps (``2 d^2`` multiply-adds per finer position) and cosine (3 dot products), the ratio loss (2
    sums and a compare), the confidence term and its scaling of the dechunked rows, and the EMA in the form it runs
    in: building the ``[S, S]`` weights (about 5 operations per entry) and multiplying them with the chunk outputs."""
    router = 2 * 2 * fine_dim * fine_dim + 3 * 2 * fine_dim
    ratio_and_confidence = 4 + 3 + fine_dim
    ema = 2 * coarse_len * coarse_len * coarse_dim + 5 * coarse_len * coarse_len
    return 3.0 * ((router + ratio_and_confidence) * fine_len + ema)


def hnet_flops(config: HNetConfig, lengths: Sequence[float]) -> FlopsReport:
    """The report of a learned-chunking model whose stage ``i`` runs at ``lengths[i]`` positions per sequence
    (``lengths[0]`` = ``caps[0]``): planned (:meth:`HNetConfig.planned_lengths`) or realized by a step."""
    c = config
    n = c.n_stages
    if len(lengths) != n:
        raise ValueError(f"expected {n} stage lengths, got {len(lengths)}")
    ffn, windows = c.resolved_ffn_dims, c.resolved_windows
    seq0 = c.caps[0]
    stages = tuple(
        _stage_flops(i, c.dims[i], ffn[i], float(lengths[i]), seq0, c.layers[i] * (2 if i < n - 1 else 1), windows[i])
        for i in range(n)
    )
    embedding = head = c.vocab_size * c.dims[0]
    body = sum(s.layers_counted * layer_params(s.dim, s.ffn_dim) for s in stages) + c.dims[0]
    transition_params, transition_flops, routing = 0, 0.0, 0.0
    for i in range(n - 1):
        fine, coarse = c.dims[i], c.dims[i + 1]
        # Chunking (norm + down map) and dechunking (norm + up map) are transitions; the router is counted.
        transition_params += fine + fine * coarse + coarse + coarse * fine + 2 * fine * fine
        transition_flops += 6.0 * 2 * fine * coarse * lengths[i + 1] / seq0
        routing += routing_flops_per_sequence(fine, lengths[i], coarse, lengths[i + 1]) / seq0
    head_flops = 6.0 * c.dims[0] * c.vocab_size
    attention = sum(s.attention_flops for s in stages)
    total = sum(s.linear_flops for s in stages) + head_flops + attention + routing
    params = embedding + body + transition_params + head
    return FlopsReport(
        family=c.family, unit="byte", seq_len=seq0, params=params, non_embedding_params=params - embedding - head,
        embedding_params=embedding, head_params=head, transition_params=transition_params, flops_per_unit=total,
        head_flops_per_unit=head_flops, attention_flops_per_unit=attention, transition_flops_per_unit=transition_flops,
        head_share=head_flops / total, stages=stages, routing_flops_per_unit=routing,
    )


def flops_report(config: ModelConfig) -> FlopsReport:
    """Parameters (exactly those of the built module) and FLOPs per input unit of ``config`` (learned chunking: at its
    target ratios)."""
    if isinstance(config, HNetConfig):
        return hnet_flops(config, config.planned_lengths())
    if isinstance(config, BPEConfig):
        c = config
        f = c.resolved_ffn_dim
        stages = (_stage_flops(0, c.dim, f, c.seq_len, c.seq_len, c.layers, c.window),)
        embedding = head = c.vocab_size * c.dim
        body = c.layers * layer_params(c.dim, f) + c.dim  # blocks + final norm
        transition_params = 0
        transition_flops = 0.0
        d0, vocab, unit, seq_len = c.dim, c.vocab_size, "token", c.seq_len
    elif isinstance(config, AUNetConfig):
        c = config
        n = c.n_stages
        ffn, windows = c.resolved_ffn_dims, c.resolved_windows
        stages = tuple(
            _stage_flops(i, c.dims[i], ffn[i], c.caps[i], c.caps[0], c.layers[i] * (2 if i < n - 1 else 1), windows[i])
            for i in range(n)
        )
        embedding = head = c.vocab_size * c.dims[0]
        body = sum(s.layers_counted * layer_params(s.dim, s.ffn_dim) for s in stages) + c.dims[0]
        n_maps = 1 + c.n_offsets if c.upsampling == "multilinear" else 1
        transition_params = 0
        transition_flops = 0.0
        for i in range(n - 1):
            fine, coarse = c.dims[i], c.dims[i + 1]
            transition_params += fine + fine * coarse + coarse + n_maps * coarse * fine  # norm+down, norm+up
            # Both projections run on the coarse sequence (caps[i+1] rows per caps[0] bytes); x6 for fwd + bwd.
            transition_flops += 6.0 * (1 + n_maps) * fine * coarse * c.caps[i + 1] / c.caps[0]
        d0, vocab, unit, seq_len = c.dims[0], c.vocab_size, "byte", c.caps[0]
    else:
        raise TypeError(f"not a model config: {type(config).__name__}")

    head_flops = 6.0 * d0 * vocab
    attention = sum(s.attention_flops for s in stages)
    total = sum(s.linear_flops for s in stages) + head_flops + attention
    params = embedding + body + transition_params + head
    return FlopsReport(
        family=config.family, unit=unit, seq_len=seq_len, params=params, non_embedding_params=params - embedding - head,
        embedding_params=embedding, head_params=head, transition_params=transition_params, flops_per_unit=total,
        head_flops_per_unit=head_flops, attention_flops_per_unit=attention, transition_flops_per_unit=transition_flops,
        head_share=head_flops / total, stages=stages,
    )
