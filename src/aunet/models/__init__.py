"""Models: the AU-Net (1 to 4 stages over bytes) and the BPE transformer baseline, sharing their blocks.

Model code knows nothing of Lightning; :func:`build_model` turns a config into a module.
"""

from __future__ import annotations

from torch import nn

from aunet.models.aunet import AUNet, AUNetStats
from aunet.models.bpe import BPETransformer
from aunet.models.config import (
    BYTE_VOCAB_SIZE,
    AUNetConfig,
    BPEConfig,
    ModelConfig,
    model_config_from_dict,
    swiglu_hidden_dim,
)
from aunet.models.family import FAMILY_CLASSES, Decoder, Family, family_of
from aunet.models.loading import load_model_config, resolve_config_path


def build_model(config: ModelConfig) -> nn.Module:
    """The module for ``config``: :class:`AUNet` or :class:`BPETransformer`."""
    if isinstance(config, AUNetConfig):
        return AUNet(config)
    if isinstance(config, BPEConfig):
        return BPETransformer(config)
    raise TypeError(f"not a model config: {type(config).__name__}")


__all__ = [
    "AUNet",
    "AUNetConfig",
    "AUNetStats",
    "BPEConfig",
    "BPETransformer",
    "BYTE_VOCAB_SIZE",
    "Decoder",
    "FAMILY_CLASSES",
    "Family",
    "ModelConfig",
    "build_model",
    "family_of",
    "load_model_config",
    "resolve_config_path",
    "model_config_from_dict",
    "swiglu_hidden_dim",
]
