"""Model families behind one interface: everything the rest of the suite needs to know about bytes or BPE tokens.

Training, scoring, generation, benchmarks and planning ask ``family_of(config)`` (:mod:`aunet.models.families`)
instead of testing which config they hold; a new family is one more :class:`Family` (with its config, model and
FLOPs), not an edit of every caller. A family is bound to one model config and answers:

* what a unit is (``unit``: ``byte`` or ``token``), whether it needs a trained tokenizer, and its document encoder;
* how a packed batch becomes model inputs and next-unit targets (:meth:`Family.forward_batch`: shift the tokens,
  slice the levels, run the forward), the one definition training, benchmarks and planning share;
* how text becomes units for scoring, where a truncated sequence may start, and the padded inputs and logits of a
  batch of scoring rows (evaluation runs AU-Nets without caps, P5 and P14 in docs/paper-conformance.md);
* the prefill and step of generation (:class:`Decoder`) and the bytes each unit decodes to, and where its chunks
  (pooled segments, learned chunks, tokens) start in a text;
* what a training step records and adds to the loss beyond the next-unit loss (:meth:`Family.step_metrics`,
  :meth:`Family.auxiliary_loss`), what it costs when the cost is learned rather than fixed by the formula
  (:meth:`Family.realized_flops`), and the per-stage record of a run built from its log (:meth:`Family.stage_records`);
* how a sweep template sizes it and which floors a sensible model of it keeps.

Batches are dicts with ``tokens`` ``[B, S+1]`` (PAD < 0 is never an input and never scored) and, for an AU-Net of
several stages, ``levels`` ``[B, S+1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from aunet.errors import ConfigError
from aunet.flops import flops_report, layer_params
from aunet.models.config import AUNetConfig, BPEConfig, ModelConfig, model_config_from_dict, swiglu_hidden_dim
from aunet.models.incremental import incremental_state
from aunet.models.loss import IGNORE
from aunet.splitting import compute_levels
from aunet.tokenizers.encoders import ByteEncoder, DocumentEncoder, TokenizerEncoder

BOS_BYTE = 256
EOS_BYTE = 257


def is_continuation_byte(b: int) -> bool:
    """A UTF-8 continuation byte (``10xxxxxx``): never the first byte of a character."""
    return 0x80 <= b < 0xC0


def char_start_at_or_after(data: bytes | Sequence[int], index: int, limit: int | None = None) -> int:
    """The first index ``>= index`` (and ``< limit``) that is not a UTF-8 continuation byte; ``limit`` if none."""
    end = len(data) if limit is None else limit
    while index < end and is_continuation_byte(data[index]):
        index += 1
    return index


def shift(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(inputs, targets)`` ``[B, S]`` of a packed batch: inputs are the first S tokens (PAD read as 0, never
    scored), targets the last S with PAD replaced by the loss's ignore index. Tokens may arrive narrower than int64
    (the packed stream sends int32): widened here, once, where the loss needs them."""
    tokens = batch["tokens"].long()
    return tokens[:, :-1].clamp(min=0), tokens[:, 1:].masked_fill(tokens[:, 1:] < 0, IGNORE)


class ColumnMean(Protocol):
    """The mean of a logged training column (``train/<key>``) over a run's log; ``tail``: over the last share of its
    logged steps only (0.1: the last tenth)."""

    def __call__(self, column: str, tail: float = 1.0) -> float: ...


class Decoder:
    """Next-unit logits of a growing sequence, for generation: built on the prompt (prefill), then :meth:`append`
    one unit at a time. ``logits`` is ``[V]`` for the next unit."""

    logits: Tensor

    def append(self, unit: int) -> None:
        raise NotImplementedError


class Family:
    """The family of one model config (see the module docstring); subclasses fill in the family's behaviour."""

    name: ClassVar[str]
    unit: ClassVar[str]
    needs_tokenizer: ClassVar[bool]
    # Positions a truncated sequence's start may move right to reach a unit boundary (scoring keeps that room).
    start_slack: ClassVar[int] = 0

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    # --- shape -------------------------------------------------------------------------------------------------------

    @property
    def n_stages(self) -> int:
        return 1

    @property
    def label(self) -> str:
        """The family as studies name it (``bpe``, ``aunet1`` .. ``aunet4``)."""
        return self.name

    @property
    def title(self) -> str:
        """The family in words, for reports."""
        raise NotImplementedError

    def stacks(self) -> list[tuple[int, int, int]]:
        """Each kind of transformer stack as ``(copies, positions, head size)``: what rotary tables it holds."""
        raise NotImplementedError

    def bytes_per_unit(self, bytes_per_token: float) -> float:
        """Text bytes one unit stands for on average (``bytes_per_token`` measured with the family's tokenizer)."""
        return bytes_per_token if self.needs_tokenizer else 1.0

    # --- data --------------------------------------------------------------------------------------------------------

    def encoder(self, tokenizer: Callable[[], Any] | None = None) -> DocumentEncoder:
        """The document encoder of this family; ``tokenizer`` is called for the trained tokenizer when one is
        needed (a family of bytes never trains one)."""
        raise NotImplementedError

    def encoding(self) -> dict[str, Any]:
        """What in the model config decides how a document becomes units (with the corpus and the data section):
        models that agree on it read the same packed stream (a sweep packs each once)."""
        raise NotImplementedError

    # --- training ----------------------------------------------------------------------------------------------------

    def inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The model's positional arguments for a packed batch: the shifted inputs ``[B, S]``."""
        return (shift(batch)[0],)

    def forward_batch(self, model: nn.Module, batch: dict[str, Tensor],
                      return_stats: bool = False) -> tuple[Tensor, Tensor, Any]:
        """``(logits [B, S, V], targets [B, S], stats or None)`` of a packed batch: the training step's forward
        (stats: the family's per-forward statistics where it has any, with ``return_stats``)."""
        return model(*self.inputs(batch)), shift(batch)[1], None

    def synthetic_batch(self, batch: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A batch of random units ``[batch, seq_len + 1]`` (and levels) for timing a step: the work of a step does
        not depend on which units it reads."""
        tokens = torch.randint(0, self.config.vocab_size, (batch, self.config.seq_len + 1), generator=generator)
        return {"tokens": tokens}

    # Whether a step's FLOPs depend on the data (learned chunk counts): then training charges
    # :meth:`realized_flops` of every micro-batch and stops at the budget on that sum; otherwise every step costs
    # exactly what the formula says (``flops_report(config).flops_per_unit`` per unit).
    data_dependent_cost: ClassVar[bool] = False

    def step_metrics(self, batch: dict[str, Tensor], stats: Any) -> dict[str, Tensor | float]:
        """What a training step logs besides its loss (as ``train/<key>``), from the batch and the stats of
        :meth:`forward_batch` with ``return_stats`` (None when the family has none)."""
        return {}

    def auxiliary_loss(self, stats: Any) -> Tensor | None:
        """A term the training loss adds to the next-unit loss (0-d), or None."""
        return None

    def realized_flops(self, stats: Any) -> float | None:
        """Training FLOPs (forward and backward) of the micro-batch behind ``stats``, for a family whose cost is
        data-dependent; None where the formula fixes the cost."""
        return None

    def stage_records(self, mean: ColumnMean, units_seen: float) -> list[dict[str, float]]:
        """Per stage of a finished run, from its training log (``summary.json``'s ``stages``); ``units_seen``:
        units the run read. Empty for a family of one stage."""
        return []

    def split_rules(self) -> list[str]:
        """The split rules that set the boundaries of the deeper stages, whose counts against the caps a sweep plan
        measures on the training text before anything trains (empty: no deeper stages, or learned boundaries)."""
        return []

    # --- scoring -----------------------------------------------------------------------------------------------------

    def bos_id(self, tokenizer: Any) -> int:
        raise NotImplementedError

    def special_ids(self, tokenizer: Any) -> tuple[int, ...]:
        raise NotImplementedError

    def units(self, data: bytes, tokenizer: Any) -> list[int]:
        """The units of ``data`` (no BOS or EOS)."""
        raise NotImplementedError

    def pair_units(self, context: str, continuation: str, tokenizer: Any) -> tuple[list[int], int]:
        """Units of ``context + continuation`` and how many of them are the context's."""
        raise NotImplementedError

    def sequence_start(self, units: Sequence[int], index: int, limit: int | None = None) -> int:
        """Where a sequence cut at ``index`` may start (at or after it, before ``limit``)."""
        return index

    def padded_inputs(self, sequences: Sequence[Sequence[int]], bos: int,
                      device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Right-padded model inputs ``[B, S]`` (``[BOS] + units[:-1]`` per sequence; padding unit 0, at level 0)
        and, for several stages, levels ``[B, S]``."""
        width = max(len(s) for s in sequences)
        tokens = np.zeros((len(sequences), width), dtype=np.int64)
        for b, seq in enumerate(sequences):
            tokens[b, 0] = bos
            tokens[b, 1:len(seq)] = seq[:-1]
        return torch.from_numpy(tokens).to(device), None

    def full_logits(self, model: nn.Module, tokens: Tensor, levels: Tensor | None) -> Tensor:
        """``[B, S, V]`` logits of the evaluation forward (every boundary kept) on :meth:`padded_inputs`."""
        return model(tokens)

    # --- generation --------------------------------------------------------------------------------------------------

    def prompt_units(self, data: bytes, limit: int, tokenizer: Any) -> list[int]:
        """The last units of ``data`` that fit ``limit`` positions."""
        units = self.units(data, tokenizer)
        return units[-limit:] if limit > 0 else []

    def decoder(self, model: nn.Module, prompt: list[int], tokenizer: Any, cached: bool = True) -> Decoder:
        raise NotImplementedError

    def unit_bytes(self, unit: int, tokenizer: Any) -> bytes:
        """The text bytes of one unit."""
        raise NotImplementedError

    def tokenizer_label(self) -> str:
        raise NotImplementedError

    def chunk_starts(self, model: nn.Module, data: bytes, tokenizer: Any) -> list[list[int]]:
        """Where the chunks of ``data`` start, as byte offsets into ``data``: one list per level of chunking, finest
        first (a deeper level's starts are among the finer level's). What ``aunet generate --show-chunks`` marks."""
        raise NotImplementedError

    # --- sizing from a sweep template (aunet.sweeps.sizing searches the deepest width and depth) ----------------

    template_keys: ClassVar[tuple[str, ...]] = ()  # required in a template of this family
    template_fields: ClassVar[frozenset[str]] = frozenset()  # every model key a template of this family may give

    @classmethod
    def check_template(cls, template: dict, key: str) -> None:
        """Raise ConfigError naming the first key of ``template`` (its required keys present) that this family
        cannot size from."""

    @classmethod
    def check_searchable(cls, template: dict, key: str) -> None:
        """Raise ConfigError when ``template`` fixes what the size search sets."""

    @classmethod
    def from_template(cls, template: dict, width: int, layers: int, bytes_per_token: float, key: str,
                      ffn: int | None = None, min_heads: int = 2) -> ModelConfig:
        """The template's model with deepest-stage ``width`` and ``layers`` (and deepest FFN size ``ffn``)."""
        raise NotImplementedError

    def floor_violations(self, min_heads: int) -> list[str]:
        """What makes the config fall below the floors of a sensible model (empty when it is fine)."""
        raise NotImplementedError


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


COMMON_FIELDS = frozenset({"family", "ffn_multiple_of", "rope_theta", "norm_eps"})


def common_settings(template: dict) -> dict:
    return {k: template[k] for k in ("ffn_multiple_of", "rope_theta", "norm_eps") if k in template}


def stage_dims(template: dict, width: int, min_heads: int) -> list[int]:
    """Widths of a multi-stage template (``widths`` relative to the deepest ``width``), each a multiple of its head
    size, at least ``min_heads`` heads wide and never narrower than the stage before."""
    dims: list[int] = []
    for r, h in zip(template["widths"], template["head_dims"]):
        d = max(_round_to(r * width, h), min_heads * h)
        if dims:  # a deeper stage is never narrower than the one it pools from
            d = max(d, -(-dims[-1] // h) * h)
        dims.append(d)
    return dims


def stage_floor_violations(dims: Sequence[int], head_dims: Sequence[int], layers: Sequence[int],
                           min_heads: int) -> list[str]:
    """The floors every multi-stage model keeps: heads, widths growing with depth, layers on every stage."""
    out = []
    for i, (d, h, n) in enumerate(zip(dims, head_dims, layers)):
        if d < min_heads * h:
            out.append(f"stage {i + 1} is {d} wide, under {min_heads} heads of {h}")
        if i and d < dims[i - 1]:
            out.append(f"stage {i + 1} ({d} wide) is narrower than stage {i} ({dims[i - 1]})")
        if n < 1:
            out.append(f"stage {i + 1} has no layers")
    return out


class ByteFamily(Family):
    """What every family over UTF-8 bytes shares: units are bytes, BOS 256 and EOS 257, cuts on characters."""

    unit = "byte"
    needs_tokenizer = False
    start_slack = 4  # a UTF-8 character has at most 3 continuation bytes

    def bos_id(self, tokenizer: Any) -> int:
        return BOS_BYTE

    def special_ids(self, tokenizer: Any) -> tuple[int, ...]:
        return (BOS_BYTE, EOS_BYTE)

    def units(self, data: bytes, tokenizer: Any) -> list[int]:
        return list(data)

    def pair_units(self, context: str, continuation: str, tokenizer: Any) -> tuple[list[int], int]:
        ctx = context.encode("utf-8")
        return list(ctx + continuation.encode("utf-8")), len(ctx)

    def sequence_start(self, units: Sequence[int], index: int, limit: int | None = None) -> int:
        return char_start_at_or_after(units, index, limit)

    def prompt_units(self, data: bytes, limit: int, tokenizer: Any) -> list[int]:
        if len(data) > limit:
            data = data[char_start_at_or_after(data, len(data) - limit):]
        return list(data)

    def unit_bytes(self, unit: int, tokenizer: Any) -> bytes:
        return bytes([unit])

    def tokenizer_label(self) -> str:
        return "aunet-bytes"

    def encoding(self) -> dict[str, Any]:
        return self.encoder().identity()  # bytes and the split rules of their levels: no tokenizer to train

    def stacks(self) -> list[tuple[int, int, int]]:
        c = self.config
        copies = [2] * (c.n_stages - 1) + [1]  # the encoder and decoder of a stage, the deepest stage's stack
        return list(zip(copies, c.caps, c.head_dims))


class AUNetFamily(ByteFamily):
    """AU-Net over UTF-8 bytes, pooled by split rules: its inputs carry the level of every byte."""

    name = "aunet"
    config: AUNetConfig

    @property
    def n_stages(self) -> int:
        return self.config.n_stages

    @property
    def label(self) -> str:
        return f"aunet{self.config.n_stages}"

    @property
    def title(self) -> str:
        return f"AU-Net, {self.config.n_stages} stage(s)"

    def encoder(self, tokenizer: Callable[[], Any] | None = None) -> DocumentEncoder:
        return ByteEncoder(self.config.splits)

    def split_rules(self) -> list[str]:
        return list(self.config.splits)

    def inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The shifted inputs ``[B, S]`` and, for several stages, their levels ``[B, S]``."""
        if self.config.n_stages == 1:
            return super().inputs(batch)
        return shift(batch)[0], batch["levels"][:, :-1]

    def forward_batch(self, model: nn.Module, batch: dict[str, Tensor],
                      return_stats: bool = False) -> tuple[Tensor, Tensor, Any]:
        if self.config.n_stages == 1 or not return_stats:  # AUNetStats: boundary counts against the caps (P5)
            return super().forward_batch(model, batch)
        logits, stats = model(*self.inputs(batch), return_stats=True)
        return logits, shift(batch)[1], stats

    def synthetic_batch(self, batch: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        shape = (batch, self.config.seq_len + 1)
        out = {"tokens": torch.randint(0, 256, shape, generator=generator)}
        if self.config.n_stages > 1:  # about one boundary in five bytes, at the top level
            out["levels"] = (torch.rand(shape, generator=generator) < 0.2).long() * (self.config.n_stages - 1)
        return out

    def step_metrics(self, batch: dict[str, Tensor], stats: Any) -> dict[str, Tensor | float]:
        """Per transition: boundaries entering the next stage and the share of sequences the cap truncated (P5)."""
        if stats is None:
            return {}
        out: dict[str, Tensor | float] = {}
        for i, (selected, kept) in enumerate(zip(stats.selected, stats.kept)):
            out[f"boundaries_{i + 1}"] = kept.float().mean()
            out[f"cap_truncated_{i + 1}"] = (selected > self.config.caps[i + 1]).float().mean()
        return out

    def stage_records(self, mean: ColumnMean, units_seen: float) -> list[dict[str, float]]:
        """Per stage: mean realized boundaries per sequence entering it, share of sequences whose boundaries the
        cap truncated, share of its cap left as padding, and units it saw per parameter of its blocks (stage 0:
        every byte; a deeper stage: its realized entries)."""
        report = flops_report(self.config)
        if len(report.stages) < 2:
            return []
        out = []
        for s in report.stages:
            params = s.layers_counted * layer_params(s.dim, s.ffn_dim)
            if s.stage == 0:
                out.append({"stage": 0, "units_per_param": units_seen / params})
                continue
            kept = mean(f"train/boundaries_{s.stage}")
            out.append({"stage": s.stage, "boundaries": kept, "truncated": mean(f"train/cap_truncated_{s.stage}"),
                        "padding": 1 - kept / s.seq_len,
                        "units_per_param": units_seen * kept / report.seq_len / params})
        return out

    def _levels(self, data: bytes) -> np.ndarray:
        """``[len(data) + 1]`` levels of ``[BOS] + data`` (BOS at the top level)."""
        lv = np.empty(len(data) + 1, dtype=np.int64)
        lv[0] = self.config.n_stages - 1
        lv[1:] = compute_levels(data, self.config.splits) if self.config.splits else 0
        return lv

    def padded_inputs(self, sequences: Sequence[Sequence[int]], bos: int,
                      device: torch.device) -> tuple[Tensor, Tensor | None]:
        tokens, _ = super().padded_inputs(sequences, bos, device)
        if not self.config.splits:
            return tokens, None
        levels = np.zeros(tuple(tokens.shape), dtype=np.int64)
        for b, seq in enumerate(sequences):
            levels[b, :len(seq)] = self._levels(bytes(seq[:-1]))
        return tokens, torch.from_numpy(levels).to(device)

    def full_logits(self, model: nn.Module, tokens: Tensor, levels: Tensor | None) -> Tensor:
        return model(tokens, levels, use_caps=False)

    def decoder(self, model: nn.Module, prompt: list[int], tokenizer: Any, cached: bool = True) -> Decoder:
        return _ByteDecoder(self, model, prompt, cached)

    def chunk_starts(self, model: nn.Module, data: bytes, tokenizer: Any) -> list[list[int]]:
        """The split rules' boundaries: a pooled segment starts at its boundary byte (P2), level ``> i`` at
        transition ``i``."""
        levels = self._levels(data)[1:]
        return [np.flatnonzero(levels > i).tolist() for i in range(self.config.n_stages - 1)]

    template_keys = ("widths", "head_dims", "caps", "layers")
    template_fields = COMMON_FIELDS | {"widths", "head_dims", "caps", "splits", "windows", "layers", "upsampling",
                                       "n_offsets"}

    @classmethod
    def check_template(cls, template: dict, key: str) -> None:
        for i, layers in enumerate(template["layers"][:-1]):
            if layers is None or int(layers) < 1:
                raise ConfigError(f"{key}.layers[{i}]", "a non-deepest stage needs at least 1 layer on each side "
                                  "(its encoder and its decoder); only the deepest stage's layers are searched (null)")

    @classmethod
    def check_searchable(cls, template: dict, key: str) -> None:
        if (template.get("layers") or [None])[-1] is not None:
            raise ConfigError(f"{key}.layers", "the deepest stage's layers must be null (searched)")

    @classmethod
    def from_template(cls, template: dict, width: int, layers: int, bytes_per_token: float, key: str,
                      ffn: int | None = None, min_heads: int = 2) -> ModelConfig:
        t = template
        dims = stage_dims(t, width, min_heads)
        stage_layers = [layers if fixed is None else int(fixed) for fixed in t["layers"]]
        extra = {k: t[k] for k in ("splits", "windows", "upsampling", "n_offsets") if k in t}
        if ffn is not None:
            multiple = int(t.get("ffn_multiple_of", 256))
            extra["ffn_dims"] = [swiglu_hidden_dim(d, multiple) for d in dims[:-1]] + [ffn]
        return model_config_from_dict(
            {"family": "aunet", "dims": dims, "layers": stage_layers, "head_dims": t["head_dims"], "caps": t["caps"],
             **extra, **common_settings(t)}, prefix=f"{key}.")

    def floor_violations(self, min_heads: int) -> list[str]:
        c = self.config
        return stage_floor_violations(c.dims, c.head_dims, c.layers, min_heads)


class BPEFamily(Family):
    """The BPE transformer over the ids of a trained tokenizer."""

    name = "bpe"
    unit = "token"
    needs_tokenizer = True
    config: BPEConfig

    @property
    def title(self) -> str:
        return "BPE transformer"

    def stacks(self) -> list[tuple[int, int, int]]:
        return [(1, self.config.seq_len, self.config.head_dim)]

    def encoder(self, tokenizer: Callable[[], Any] | None = None) -> DocumentEncoder:
        if tokenizer is None:
            raise ValueError("a BPE model needs its tokenizer")
        return TokenizerEncoder(tokenizer())

    def encoding(self) -> dict[str, Any]:
        return {"units": "tokens", "vocab_size": self.config.vocab_size}  # the tokenizer trained at that size

    def bos_id(self, tokenizer: Any) -> int:
        return int(tokenizer.bos_id)

    def special_ids(self, tokenizer: Any) -> tuple[int, ...]:
        return (int(tokenizer.bos_id), int(tokenizer.eos_id))

    def units(self, data: bytes, tokenizer: Any) -> list[int]:
        return [int(t) for t in tokenizer.encode(data)]

    def pair_units(self, context: str, continuation: str, tokenizer: Any) -> tuple[list[int], int]:
        # lm-eval's _encode_pair: trailing whitespace of the context joins the continuation, so the seam tokenizes
        # as running text does.
        stripped = context.rstrip()
        if len(stripped) < len(context):
            context, continuation = stripped, context[len(stripped):] + continuation
        n_ctx = len(self.units(context.encode("utf-8"), tokenizer)) if context else 0
        return self.units((context + continuation).encode("utf-8"), tokenizer), n_ctx

    def decoder(self, model: nn.Module, prompt: list[int], tokenizer: Any, cached: bool = True) -> Decoder:
        return _TokenDecoder(model, [self.bos_id(tokenizer), *prompt], cached)

    def unit_bytes(self, unit: int, tokenizer: Any) -> bytes:
        return tokenizer.decode_bytes([unit])

    def tokenizer_label(self) -> str:
        return f"aunet-bpe-{self.config.vocab_size}"

    def chunk_starts(self, model: nn.Module, data: bytes, tokenizer: Any) -> list[list[int]]:
        """Where each BPE token starts: the tokenizer's chunks."""
        starts, offset = [], 0
        for unit in self.units(data, tokenizer):
            starts.append(offset)
            offset += len(self.unit_bytes(unit, tokenizer))
        return [starts]

    template_keys = ("head_dim", "vocab_size")
    template_fields = COMMON_FIELDS | {"head_dim", "vocab_size", "seq_bytes", "window"}

    @classmethod
    def from_template(cls, template: dict, width: int, layers: int, bytes_per_token: float, key: str,
                      ffn: int | None = None, min_heads: int = 2) -> ModelConfig:
        t = template
        seq_bytes = int(t.get("seq_bytes", 512))
        return model_config_from_dict(
            {"family": "bpe", "dim": width, "layers": layers, "head_dim": int(t.get("head_dim", 64)),
             "vocab_size": int(t["vocab_size"]), "seq_len": max(8, round(seq_bytes / bytes_per_token)),
             "window": t.get("window"), "ffn_dim": ffn, **common_settings(t)}, prefix=f"{key}.")

    def floor_violations(self, min_heads: int) -> list[str]:
        c, out = self.config, []
        if c.dim < min_heads * c.head_dim:
            out.append(f"width {c.dim} is under {min_heads} heads of {c.head_dim}")
        if c.layers < 1:
            out.append("no layers")
        return out


class _ByteDecoder(Decoder):
    """AU-Net generation: each appended byte gets its level from the split rules on the grown buffer (append-stable,
    so earlier levels never change), then the cascade runs exactly the stages whose segment the byte closes;
    uncached, the whole uncapped forward is recomputed (the reference)."""

    def __init__(self, family: AUNetFamily, model: nn.Module, prompt: list[int], cached: bool) -> None:
        self.family, self.model = family, model
        self.device = next(model.parameters()).device
        self.buffer = bytearray(prompt)
        tokens = torch.tensor([BOS_BYTE, *self.buffer], device=self.device)
        levels = torch.from_numpy(family._levels(bytes(self.buffer))).to(self.device)
        self.state = incremental_state(model) if cached else None
        self.logits = self.state.extend(tokens, levels)[-1] if self.state is not None else self._full()

    def _full(self) -> Tensor:
        tokens = torch.tensor([BOS_BYTE, *self.buffer], device=self.device)
        levels = torch.from_numpy(self.family._levels(bytes(self.buffer))).to(self.device)
        return self.model(tokens[None], levels[None], use_caps=False)[0, -1]

    def append(self, unit: int) -> None:
        self.buffer.append(unit)
        if self.state is None:
            self.logits = self._full()
            return
        splits = self.family.config.splits
        level = int(compute_levels(bytes(self.buffer), splits)[-1]) if splits else 0
        self.logits = self.state.step(unit, level)  # type: ignore[union-attr]


class _TokenDecoder(Decoder):
    """BPE generation with a KV cache, or by recomputation."""

    def __init__(self, model: nn.Module, tokens: list[int], cached: bool) -> None:
        self.model = model
        device = next(model.parameters()).device
        self.tokens = torch.tensor(tokens, device=device)
        self.state = incremental_state(model) if cached else None
        self.logits = self.state.extend(self.tokens)[-1] if self.state is not None else model(self.tokens[None])[0, -1]

    def append(self, unit: int) -> None:
        new = torch.tensor([unit], device=self.tokens.device)
        if self.state is not None:
            self.logits = self.state.extend(new)[-1]
        else:
            self.tokens = torch.cat([self.tokens, new])
            self.logits = self.model(self.tokens[None])[0, -1]
