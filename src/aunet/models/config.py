"""Model configurations of every family, validated on construction so that an impossible config never exists.

YAML model sections map one-to-one onto these dataclasses (``family: aunet``, ``family: bpe`` or ``family: hnet``
plus the fields below); see :func:`model_config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from aunet.config import from_dict
from aunet.errors import ConfigError, excerpt
from aunet.splitting import parse_rule

BYTE_VOCAB_SIZE = 258  # 256 byte values + BOS + EOS
MAX_STAGES = 4
UPSAMPLING_MODES = ("multilinear", "repeat", "simple")


def swiglu_hidden_dim(dim: int, multiple_of: int = 256) -> int:
    """The paper's SwiGLU hidden size: ``floor(8 * dim / 3)`` rounded up to a multiple of ``multiple_of``."""
    return multiple_of * math.ceil((8 * dim // 3) / multiple_of)


def _check_positive(values: list[int | None], key: str, allow_none: bool = False) -> None:
    for i, v in enumerate(values):
        if v is None and allow_none:
            continue
        if v is None or v < 1:
            raise ConfigError(f"{key}[{i}]",
                              f"must be a positive integer{' or null' if allow_none else ''}, got {excerpt(v)}")


@dataclass
class AUNetConfig:
    """An AU-Net of ``len(dims)`` stages (1 to 4); every list has one entry per stage, bytes first.

    Attributes:
        dims: width of each stage.
        layers: layers per stage; a non-deepest stage has this many in its encoder *and* again in its decoder.
        head_dims: attention head size per stage (``dims[i]`` must be a multiple, and it must be even for RoPE).
        caps: maximum sequence length per stage; ``caps[0]`` is the byte sequence length. Deeper stages keep the
            first ``caps[i]`` boundaries and pad after them; caps never grow with depth.
        splits: one split rule per transition (``len(dims) - 1`` of them), e.g. ``["word@1", "word@2"]``.
        windows: sliding-window size per stage, or null for full causal attention. Default: all null.
        ffn_dims: explicit SwiGLU hidden sizes; default: the paper's rule with ``ffn_multiple_of``.
        ffn_multiple_of: rounding multiple of the default SwiGLU size (256 in the paper; smaller for tiny models).
        upsampling: ``multilinear`` (shared linear plus one of ``n_offsets`` offset linears, the paper's default),
            ``repeat`` (shared linear only) or ``simple`` (coarse vector only at its own boundary byte).
        n_offsets: number of position-in-segment matrices of multilinear upsampling (16 in the paper).
        rope_theta, norm_eps: RoPE base and RMSNorm epsilon.
    """

    dims: list[int]
    layers: list[int]
    head_dims: list[int]
    caps: list[int]
    splits: list[str] = field(default_factory=list)
    windows: Union[list[Union[int, None]], None] = None
    ffn_dims: Union[list[int], None] = None
    ffn_multiple_of: int = 256
    upsampling: str = "multilinear"
    n_offsets: int = 16
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    family: ClassVar[str] = "aunet"
    vocab_size: ClassVar[int] = BYTE_VOCAB_SIZE

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_stages(self) -> int:
        return len(self.dims)

    @property
    def seq_len(self) -> int:
        """Bytes per training sequence (``caps[0]``)."""
        return self.caps[0]

    @property
    def resolved_windows(self) -> list[int | None]:
        return list(self.windows) if self.windows is not None else [None] * self.n_stages

    @property
    def resolved_ffn_dims(self) -> list[int]:
        if self.ffn_dims is not None:
            return list(self.ffn_dims)
        return [swiglu_hidden_dim(d, self.ffn_multiple_of) for d in self.dims]

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key that cannot work."""
        n = len(self.dims)
        if not 1 <= n <= MAX_STAGES:
            raise ConfigError("dims", f"expected 1 to {MAX_STAGES} stages (one width per stage), got {n}")
        for key in ("layers", "head_dims", "caps", "windows", "ffn_dims"):
            values = getattr(self, key)
            if values is not None and len(values) != n:
                raise ConfigError(key, f"expected {n} entries (one per stage, as in dims), got {len(values)}")
        if len(self.splits) != n - 1:
            raise ConfigError("splits", f"expected {n - 1} split rule(s) for {n} stages (one per transition), got "
                                        f"{len(self.splits)}")
        _check_positive(self.dims, "dims")
        _check_positive(self.layers, "layers")
        _check_positive(self.head_dims, "head_dims")
        _check_positive(self.caps, "caps")
        if self.windows is not None:
            _check_positive(self.windows, "windows", allow_none=True)
        if self.ffn_dims is not None:
            _check_positive(self.ffn_dims, "ffn_dims")
        for i, (d, h) in enumerate(zip(self.dims, self.head_dims)):
            if d % h:
                raise ConfigError(f"head_dims[{i}]", f"dims[{i}]={d} is not divisible by head size {h}; pick a divisor")
            if h % 2:
                raise ConfigError(f"head_dims[{i}]", f"head size {h} must be even for rotary embeddings")
        for i in range(1, n):
            if self.caps[i] > self.caps[i - 1]:
                raise ConfigError(f"caps[{i}]", f"{self.caps[i]} exceeds caps[{i - 1}]={self.caps[i - 1]}; caps shrink "
                                                "with depth")
        for i, spec in enumerate(self.splits):
            try:
                parse_rule(spec)
            except ConfigError as exc:
                raise ConfigError(f"splits[{i}]", exc.message) from None
        if self.upsampling not in UPSAMPLING_MODES:
            raise ConfigError("upsampling", f"unknown mode {excerpt(self.upsampling)}; choose one of "
                                            f"{', '.join(UPSAMPLING_MODES)}")
        if self.n_offsets < 1:
            raise ConfigError("n_offsets", f"must be a positive integer, got {self.n_offsets}")
        if self.ffn_multiple_of < 1:
            raise ConfigError("ffn_multiple_of", f"must be a positive integer, got {self.ffn_multiple_of}")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ConfigError("rope_theta" if self.rope_theta <= 0 else "norm_eps", "must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}


@dataclass
class BPEConfig:
    """The BPE transformer baseline, built from the same blocks as AU-Net.

    Attributes:
        dim, layers, head_dim: width, depth and attention head size.
        vocab_size: size of the BPE vocabulary (the tokenizer itself comes with training).
        seq_len: tokens per training sequence.
        window: sliding-window size, or null for full causal attention.
        ffn_dim: explicit SwiGLU hidden size; default: the paper's rule with ``ffn_multiple_of``.
    """

    dim: int
    layers: int
    head_dim: int
    vocab_size: int
    seq_len: int
    window: Union[int, None] = None
    ffn_dim: Union[int, None] = None
    ffn_multiple_of: int = 256
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    family: ClassVar[str] = "bpe"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def resolved_ffn_dim(self) -> int:
        return self.ffn_dim if self.ffn_dim is not None else swiglu_hidden_dim(self.dim, self.ffn_multiple_of)

    def validate(self) -> None:
        for key in ("dim", "layers", "head_dim", "vocab_size", "seq_len", "ffn_multiple_of"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(key, f"must be a positive integer, got {value}")
        for key in ("window", "ffn_dim"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(key, f"must be a positive integer or null, got {value}")
        if self.dim % self.head_dim:
            raise ConfigError("head_dim",
                              f"dim={self.dim} is not divisible by head size {self.head_dim}; pick a divisor")
        if self.head_dim % 2:
            raise ConfigError("head_dim", f"head size {self.head_dim} must be even for rotary embeddings")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ConfigError("rope_theta" if self.rope_theta <= 0 else "norm_eps", "must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}


MAX_CHUNKING_STAGES = 2  # what the causality and cache tests cover


@dataclass
class HNetConfig:
    """A byte model with learned chunk boundaries (H-Net's dynamic chunking) built from our transformer blocks.

    ``len(dims)`` stages: the byte stage, one stage per chunking step, the main network last (2 stages: one
    chunking step; 3: two). A non-deepest stage has an encoder and a decoder of ``layers[i]`` blocks each; a routing
    module after each encoder decides which of its positions start a chunk of the next stage (see
    :mod:`aunet.models.chunking`). Every list has one entry per stage, bytes first.

    Attributes:
        dims, layers, head_dims, windows, ffn_dims, ffn_multiple_of, rope_theta, norm_eps: as :class:`AUNetConfig`.
        caps: maximum sequence length per stage; ``caps[0]`` is the byte sequence length. A deeper stage keeps the
            first ``caps[i]`` chunks (the rest of the sequence reuses the last one) and runs at the batch's largest
            chunk count under its cap, padding after the real chunks; caps never grow with depth.
        target_ratios: one per chunking step: the compression the ratio loss pulls toward, in positions of the
            stage before per chunk (4.6 bytes per chunk is about a word on our books). Planning charges FLOPs at
            these ratios; training charges the realized chunk counts.
        ratio_loss_weight: weight of the ratio loss (summed over chunking steps) in the training loss.
    """

    dims: list[int]
    layers: list[int]
    head_dims: list[int]
    caps: list[int]
    target_ratios: list[float]
    ratio_loss_weight: float = 0.03
    windows: Union[list[Union[int, None]], None] = None
    ffn_dims: Union[list[int], None] = None
    ffn_multiple_of: int = 256
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    family: ClassVar[str] = "hnet"
    vocab_size: ClassVar[int] = BYTE_VOCAB_SIZE

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_stages(self) -> int:
        return len(self.dims)

    @property
    def chunking_stages(self) -> int:
        return len(self.dims) - 1

    @property
    def seq_len(self) -> int:
        """Bytes per training sequence (``caps[0]``)."""
        return self.caps[0]

    @property
    def resolved_windows(self) -> list[int | None]:
        return list(self.windows) if self.windows is not None else [None] * self.n_stages

    @property
    def resolved_ffn_dims(self) -> list[int]:
        if self.ffn_dims is not None:
            return list(self.ffn_dims)
        return [swiglu_hidden_dim(d, self.ffn_multiple_of) for d in self.dims]

    def planned_lengths(self) -> list[float]:
        """Positions per stage for one sequence at the target ratios (under the caps): what planning charges."""
        lengths = [float(self.caps[0])]
        for cap, ratio in zip(self.caps[1:], self.target_ratios):
            lengths.append(min(float(cap), lengths[-1] / ratio))
        return lengths

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key that cannot work."""
        n = len(self.dims)
        if not 2 <= n <= MAX_CHUNKING_STAGES + 1:
            raise ConfigError("dims", f"expected 2 to {MAX_CHUNKING_STAGES + 1} stages (1 to {MAX_CHUNKING_STAGES} "
                                      f"chunking steps, one width per stage), got {n}")
        for key in ("layers", "head_dims", "caps", "windows", "ffn_dims"):
            values = getattr(self, key)
            if values is not None and len(values) != n:
                raise ConfigError(key, f"expected {n} entries (one per stage, as in dims), got {len(values)}")
        if len(self.target_ratios) != n - 1:
            raise ConfigError("target_ratios", f"expected {n - 1} ratio(s) for {n} stages (one per chunking step), "
                                               f"got {len(self.target_ratios)}")
        for i, ratio in enumerate(self.target_ratios):
            if not ratio > 1:
                raise ConfigError(f"target_ratios[{i}]", f"a compression must exceed 1, got {excerpt(ratio)}")
        _check_positive(self.dims, "dims")
        _check_positive(self.layers, "layers")
        _check_positive(self.head_dims, "head_dims")
        _check_positive(self.caps, "caps")
        if self.windows is not None:
            _check_positive(self.windows, "windows", allow_none=True)
        if self.ffn_dims is not None:
            _check_positive(self.ffn_dims, "ffn_dims")
        for i, (d, h) in enumerate(zip(self.dims, self.head_dims)):
            if d % h:
                raise ConfigError(f"head_dims[{i}]", f"dims[{i}]={d} is not divisible by head size {h}; pick a divisor")
            if h % 2:
                raise ConfigError(f"head_dims[{i}]", f"head size {h} must be even for rotary embeddings")
        for i in range(1, n):
            if self.caps[i] > self.caps[i - 1]:
                raise ConfigError(f"caps[{i}]", f"{self.caps[i]} exceeds caps[{i - 1}]={self.caps[i - 1]}; caps shrink "
                                                "with depth")
        if not self.ratio_loss_weight >= 0:
            raise ConfigError("ratio_loss_weight", f"must be 0 or more, got {excerpt(self.ratio_loss_weight)}")
        if self.ffn_multiple_of < 1:
            raise ConfigError("ffn_multiple_of", f"must be a positive integer, got {self.ffn_multiple_of}")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ConfigError("rope_theta" if self.rope_theta <= 0 else "norm_eps", "must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}


ModelConfig = Union[AUNetConfig, BPEConfig, HNetConfig]
FAMILIES: dict[str, type] = {"aunet": AUNetConfig, "bpe": BPEConfig, "hnet": HNetConfig}


def model_config_from_dict(section: dict[str, Any], prefix: str = "model.") -> ModelConfig:
    """Build a model config from a YAML ``model:`` section; errors name keys as ``model.<key>``."""
    if not isinstance(section, dict):
        raise ConfigError(prefix.rstrip("."),
                          f"expected a mapping with 'family: aunet', 'family: bpe' or 'family: hnet', got "
                          f"{excerpt(section)}")
    body = dict(section)
    family = body.pop("family", None)
    if family not in FAMILIES:
        raise ConfigError(f"{prefix}family", f"expected one of {', '.join(FAMILIES)}, got {excerpt(family)}")
    try:
        return from_dict(FAMILIES[family], body, prefix=prefix)
    except ConfigError as exc:
        if exc.key.startswith(prefix):
            raise
        raise ConfigError(f"{prefix}{exc.key}", exc.message) from None
