"""The learned-chunking family (:class:`~aunet.models.hnet.HNet`) behind the family interface.

Its data are AU-Net-2's: bytes with their ``word@1`` levels. The model never reads the levels (its boundaries are
the router's); they are there to observe where the learned chunks fall against AU-Net's word boundaries
(``word_start_share``: the share of learned chunk starts that sit on a ``word@1`` byte, the byte AU-Net-2 pools).

Its cost is data-dependent: a deeper stage runs at the batch's largest chunk count, so every training step is charged
:func:`~aunet.flops.hnet_flops` at the lengths it ran at (:meth:`HNetFamily.realized_flops`), while planning charges
the target ratios (:func:`~aunet.flops.flops_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from aunet.errors import ConfigError
from aunet.flops import flops_report, hnet_flops, layer_params
from aunet.models.config import HNetConfig, ModelConfig, model_config_from_dict, swiglu_hidden_dim
from aunet.models.family import (
    BOS_BYTE,
    COMMON_FIELDS,
    ByteFamily,
    ColumnMean,
    Decoder,
    common_settings,
    shift,
    stage_dims,
    stage_floor_violations,
)
from aunet.models.hnet import HNetStats
from aunet.models.hnet_cascade import HNetCascade
from aunet.tokenizers.encoders import ByteEncoder, DocumentEncoder

WORD_RULES = ["word@1"]  # observed only: where AU-Net-2 would pool
CAP_HEADROOM = 1.2  # a deeper stage's cap leaves at least this factor over the chunks its target ratio plans
END_SHARE = 0.1  # "at the end of training": the last tenth of the logged steps


class HNetFamily(ByteFamily):
    """Learned chunk boundaries over UTF-8 bytes: 1 or 2 chunking steps, then a main network."""

    name = "hnet"
    data_dependent_cost = True
    config: HNetConfig

    @property
    def n_stages(self) -> int:
        return self.config.n_stages

    @property
    def label(self) -> str:
        return f"hnet{self.config.chunking_stages}"

    @property
    def title(self) -> str:
        return f"learned chunking (H-Net style), {self.config.chunking_stages} chunking step(s)"

    def encoder(self, tokenizer: Callable[[], Any] | None = None) -> DocumentEncoder:
        return ByteEncoder(WORD_RULES)

    def forward_batch(self, model: nn.Module, batch: dict[str, Tensor],
                      return_stats: bool = False) -> tuple[Tensor, Tensor, Any]:
        if not return_stats:
            return super().forward_batch(model, batch)
        logits, stats = model(*self.inputs(batch), return_stats=True)
        return logits, shift(batch)[1], stats

    def synthetic_batch(self, batch: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        shape = (batch, self.config.seq_len + 1)
        return {"tokens": torch.randint(0, 256, shape, generator=generator),
                "levels": (torch.rand(shape, generator=generator) < 0.2).long()}

    # --- training: the ratio loss, the realized cost, what a step records ---------------------------------------------

    def auxiliary_loss(self, stats: HNetStats | None) -> Tensor | None:
        if stats is None:
            return None
        return self.config.ratio_loss_weight * torch.stack(stats.ratio_losses).sum()

    def realized_flops(self, stats: HNetStats | None) -> float | None:
        """Every sequence of the micro-batch ran at the lengths of the step (padding to the largest chunk count
        counted, as caps are for AU-Net)."""
        if stats is None:
            return None
        report = hnet_flops(self.config, [stats.seq_len, *stats.lengths])
        return report.flops_per_sequence() * stats.positions[0].shape[0]

    def step_metrics(self, batch: dict[str, Tensor], stats: HNetStats | None) -> dict[str, Tensor | float]:
        """Per chunking step ``i`` (stage ``i`` -> ``i+1``, numbered from 1 like AU-Net's transitions):
        ``chunks_i`` (starts the router chose per sequence), ``boundaries_i`` (chunks that entered the next stage),
        ``cap_truncated_i``, ``stage_length_i`` (the length the next stage ran at: its charged cost),
        ``bytes_per_chunk_i``, ``word_start_share_i`` (learned starts on a ``word@1`` byte, forced ones aside),
        ``word_next_share_i`` (on the byte right after one: a chunk that begins with the word's first letter rather
        than the space before it), ``word_recall_i`` (``word@1`` entries that start a chunk), ``boundary_prob_i``
        and ``ratio_loss_i``."""
        if stats is None:
            return {}
        word = batch["levels"][:, :-1] > 0  # word@1 positions of the inputs
        after_word = torch.cat([torch.zeros_like(word[:, :1]), word[:, :-1]], dim=1)
        text = stats.real[0].sum()
        out: dict[str, Tensor | float] = {}
        for i in range(self.config.chunking_stages):
            n = i + 1
            real, forced, boundary = stats.real[i], stats.forced[i], stats.boundary[i]
            at_word = word.gather(1, stats.positions[i]) & real
            learned = boundary & ~forced
            hits = (learned & at_word).sum()
            count = learned.sum().clamp(min=1)
            out[f"chunks_{n}"] = stats.selected[i].float().mean()
            out[f"boundaries_{n}"] = stats.kept[i].float().mean()
            out[f"cap_truncated_{n}"] = (stats.selected[i] > self.config.caps[n]).float().mean()
            out[f"stage_length_{n}"] = float(stats.lengths[i])
            out[f"bytes_per_chunk_{n}"] = text / stats.selected[i].sum().clamp(min=1)
            out[f"word_start_share_{n}"] = hits / count
            out[f"word_next_share_{n}"] = (learned & after_word.gather(1, stats.positions[i])).sum() / count
            out[f"word_recall_{n}"] = hits / (at_word & ~forced).sum().clamp(min=1)
            out[f"boundary_prob_{n}"] = (stats.prob[i] * real).sum() / real.sum()
            out[f"ratio_loss_{n}"] = stats.ratio_losses[i].detach()
        return out

    def stage_records(self, mean: ColumnMean, units_seen: float) -> list[dict[str, float]]:
        """Stage 0: bytes per parameter. Each deeper stage: its realized chunks per sequence and how many entered it
        (the cap), truncation, the length it ran at against the planned one, padding (share of that length), bytes
        per chunk and the share of learned starts on ``word@1`` bytes (over the run and over its last tenth, where
        the router has settled), the same share one byte later (last tenth: chunks that begin with a word's first
        letter), the share of ``word@1`` entries that start a chunk (last tenth), and units per parameter. A deeper
        stage's bytes per chunk are bytes per chunk of that stage (stage 2: per second-level chunk)."""
        report = flops_report(self.config)
        planned = self.config.planned_lengths()
        stage0 = report.stages[0]
        out = [{"stage": 0, "units_per_param": units_seen / (stage0.layers_counted
                                                             * layer_params(stage0.dim, stage0.ffn_dim))}]
        for s in report.stages[1:]:
            n = s.stage
            kept, length = mean(f"train/boundaries_{n}"), mean(f"train/stage_length_{n}")
            chunks, chunks_end = mean(f"train/chunks_{n}"), mean(f"train/chunks_{n}", END_SHARE)
            params = s.layers_counted * layer_params(s.dim, s.ffn_dim)
            out.append({
                "stage": n, "chunks": chunks, "boundaries": kept,
                "truncated": mean(f"train/cap_truncated_{n}"), "length": length, "planned_length": planned[n],
                "padding": 1 - kept / length,
                # Training windows are whole: bytes per chunk is the window over its mean chunk count.
                "bytes_per_chunk": report.seq_len / chunks, "bytes_per_chunk_end": report.seq_len / chunks_end,
                "word_start_share": mean(f"train/word_start_share_{n}"),
                "word_start_share_end": mean(f"train/word_start_share_{n}", END_SHARE),
                "word_next_share_end": mean(f"train/word_next_share_{n}", END_SHARE),
                "word_recall_end": mean(f"train/word_recall_{n}", END_SHARE),
                "units_per_param": units_seen * kept / report.seq_len / params,
            })
        return out

    # --- scoring and generation ---------------------------------------------------------------------------------------

    def full_logits(self, model: nn.Module, tokens: Tensor, levels: Tensor | None) -> Tensor:
        return model(tokens, use_caps=False)

    def decoder(self, model: nn.Module, prompt: list[int], tokenizer: Any, cached: bool = True) -> Decoder:
        return _ChunkingDecoder(model, prompt, cached)

    def chunk_starts(self, model: nn.Module, data: bytes, tokenizer: Any) -> list[list[int]]:
        """The router's chunk starts over ``[BOS] + data`` with every chunk kept (BOS itself left out)."""
        device = next(model.parameters()).device
        tokens = torch.tensor([BOS_BYTE, *data], device=device)[None]
        with torch.no_grad():
            starts = model.chunk_starts(tokens)
        return [(torch.nonzero(mask[0, 1:]).squeeze(1)).tolist() for mask in starts]

    # --- sizing from a sweep template ---------------------------------------------------------------------------------

    template_keys = ("widths", "head_dims", "caps", "layers", "target_ratios")
    template_fields = COMMON_FIELDS | {"widths", "head_dims", "caps", "windows", "layers", "target_ratios",
                                       "ratio_loss_weight"}

    @classmethod
    def check_template(cls, template: dict, key: str) -> None:
        for i, layers in enumerate(template["layers"][:-1]):
            if layers is None or int(layers) < 1:
                raise ConfigError(f"{key}.layers[{i}]", "a non-deepest stage needs at least 1 layer on each side "
                                  "(its encoder and its decoder); only the main network's layers are searched (null)")

    @classmethod
    def check_searchable(cls, template: dict, key: str) -> None:
        if (template.get("layers") or [None])[-1] is not None:
            raise ConfigError(f"{key}.layers", "the main network's layers must be null (searched)")

    @classmethod
    def from_template(cls, template: dict, width: int, layers: int, bytes_per_token: float, key: str,
                      ffn: int | None = None, min_heads: int = 2) -> ModelConfig:
        t = template
        dims = stage_dims(t, width, min_heads)
        stage_layers = [layers if fixed is None else int(fixed) for fixed in t["layers"]]
        extra = {k: t[k] for k in ("windows", "ratio_loss_weight") if k in t}
        if ffn is not None:
            multiple = int(t.get("ffn_multiple_of", 256))
            extra["ffn_dims"] = [swiglu_hidden_dim(d, multiple) for d in dims[:-1]] + [ffn]
        return model_config_from_dict(
            {"family": "hnet", "dims": dims, "layers": stage_layers, "head_dims": t["head_dims"], "caps": t["caps"],
             "target_ratios": t["target_ratios"], **extra, **common_settings(t)}, prefix=f"{key}.")

    def floor_violations(self, min_heads: int) -> list[str]:
        """The floors of every multi-stage model, and room under each cap: a cap that the target ratio's chunk
        count nearly fills truncates most sequences while the router is still learning."""
        c = self.config
        out = stage_floor_violations(c.dims, c.head_dims, c.layers, min_heads)
        target = float(c.caps[0])
        for i, ratio in enumerate(c.target_ratios, start=1):
            target /= ratio
            if c.caps[i] < CAP_HEADROOM * target:
                out.append(f"stage {i + 1}'s cap {c.caps[i]} leaves less than {CAP_HEADROOM - 1:.0%} room over the "
                           f"{target:.0f} chunks per sequence its target ratio plans")
        return out


class _ChunkingDecoder(Decoder):
    """Generation with per-stack KV caches (:class:`~aunet.models.hnet_cascade.HNetCascade`), or by recomputing
    the uncapped forward over the whole sequence at every step (the reference)."""

    def __init__(self, model: nn.Module, prompt: list[int], cached: bool) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.tokens = [BOS_BYTE, *prompt]
        self.state = HNetCascade(model) if cached else None  # type: ignore[arg-type]
        if self.state is not None:
            self.logits = self.state.extend(torch.tensor(self.tokens, device=self.device))[-1]
        else:
            self.logits = self._full()

    def _full(self) -> Tensor:
        with torch.no_grad():
            return self.model(torch.tensor(self.tokens, device=self.device)[None], use_caps=False)[0, -1]

    def append(self, unit: int) -> None:
        self.tokens.append(unit)
        self.logits = self.state.step(unit) if self.state is not None else self._full()
