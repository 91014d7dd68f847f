"""The Autoregressive U-Net over bytes (P1-P5, P8-P11 in docs/paper-conformance.md).

Contracting path: each non-deepest stage ``i`` runs its encoder over its sequence, keeps the output as the skip,
and pools the positions selected at transition ``i`` into stage ``i+1``. The deepest stage (trunk) runs over its
pooled sequence. Expanding path: each coarse vector is upsampled onto the positions of its segment (the most recent
boundary at or before each position), added to the skip, and refined by the stage's decoder. A final RMSNorm and a
linear head give next-byte logits over 258 symbols. With one stage the model is a plain byte-level transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aunet.models.config import AUNetConfig
from aunet.models.layers import TransformerStack, init_weights
from aunet.models.transitions import (
    Downsample,
    Upsample,
    keep_first_boundaries,
    pooling_index,
    segment_index,
)


@dataclass
class AUNetStats:
    """Per-transition boundary counts of one forward pass, for logging against the caps (P5).

    ``selected[i]`` ``[B]``: positions the split rule selected for transition ``i`` (among real inputs of stage i);
    ``kept[i]`` ``[B]``: how many entered stage ``i+1`` after the cap (``<= caps[i+1]``).
    """

    selected: list[Tensor]
    kept: list[Tensor]


class AUNet(nn.Module):
    """AU-Net with 1 to 4 stages; see :class:`~aunet.models.config.AUNetConfig` for the knobs."""

    def __init__(self, config: AUNetConfig) -> None:
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
        self.downs = nn.ModuleList(Downsample(c.dims[i], c.dims[i + 1], c.norm_eps) for i in range(n - 1))
        self.trunk = stack(n - 1)
        self.ups = nn.ModuleList(Upsample(c.dims[i + 1], c.dims[i], c.upsampling, c.n_offsets, c.norm_eps)
                                 for i in range(n - 1))
        self.decoders = nn.ModuleList(stack(i) for i in range(n - 1))
        self.norm = nn.RMSNorm(c.dims[0], eps=c.norm_eps)
        self.head = nn.Linear(c.dims[0], c.vocab_size, bias=False)
        init_weights(self)

    def forward(self, tokens: Tensor, levels: Tensor | None = None, *, use_caps: bool = True,
                return_stats: bool = False) -> Tensor | tuple[Tensor, AUNetStats]:
        """Next-byte logits.

        Args:
            tokens: ``[B, S]`` long, byte ids 0..257 (BOS 256, EOS 257).
            levels: ``[B, S]`` integer levels from :func:`aunet.splitting.compute_levels` (transition ``i`` pools
                positions with level ``> i``); may be None for one stage. Position 0 is forced to the top level so
                every stage starts with a coarse vector (P3), whatever the caller passed.
            use_caps: truncate deeper stages to ``caps`` (training, static shapes). With False every boundary is
                kept and each coarse length is the batch's largest boundary count: exact for evaluation of long
                inputs, at the price of one host synchronisation per transition.
            return_stats: also return :class:`AUNetStats`.

        Returns:
            ``[B, S, 258]`` logits (float), plus the stats when asked.
        """
        n = self.config.n_stages
        h = self.embed(tokens)
        selected: list[Tensor] = []
        kept: list[Tensor] = []
        if n == 1:
            h = self.trunk(h)
        else:
            if levels is None:
                raise ValueError(f"an AU-Net with {n} stages needs levels; compute them with aunet.splitting")
            b = tokens.shape[0]
            lv = levels.long()
            lv = torch.cat([torch.full((b, 1), n - 1, dtype=lv.dtype, device=lv.device), lv[:, 1:]], dim=1)
            skips, plans = [], []
            for i in range(n - 1):
                h = self.encoders[i](h)
                skips.append(h)
                length = h.shape[1]
                mask = lv > i
                selected.append(mask.sum(dim=1))
                if use_caps:
                    out_len = min(self.config.caps[i + 1], length)
                    mask = keep_first_boundaries(mask, out_len)
                else:
                    out_len = int(selected[-1].max())  # host sync: evaluation path only
                index, count = pooling_index(mask, out_len)
                kept.append(count)
                plans.append((mask, *segment_index(mask)))
                h = self.downs[i](h, index)
                # Levels of the pooled positions, in the coarse stage's coordinates; padding can never be selected.
                real = torch.arange(out_len, device=lv.device)[None, :] < count[:, None]
                lv = torch.where(real, lv.gather(1, index), torch.full_like(index, -1))
            h = self.trunk(h)
            for i in reversed(range(n - 1)):
                mask, segment, offset = plans[i]
                h = self.decoders[i](skips[i] + self.ups[i](h, segment, offset, mask))
        logits = self.head(self.norm(h))
        if return_stats:
            return logits, AUNetStats(selected, kept)
        return logits
