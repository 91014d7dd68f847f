"""Models: the AU-Net (1 to 4 stages over bytes), learned chunking (H-Net style, 1 or 2 chunking steps) and the BPE
transformer baseline, sharing their blocks.

Model code knows nothing of Lightning; :func:`build_model` turns a config into a module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from aunet.models.config import (
    BYTE_VOCAB_SIZE,
    AUNetConfig,
    BPEConfig,
    HNetConfig,
    ModelConfig,
    model_config_from_dict,
    swiglu_hidden_dim,
)
from aunet.models.loading import load_model_config, resolve_config_path

if TYPE_CHECKING:
    from torch import nn

    from aunet.models.aunet import AUNet, AUNetStats
    from aunet.models.bpe import BPETransformer
    from aunet.models.families import FAMILY_CLASSES, family_of
    from aunet.models.family import Decoder, Family
    from aunet.models.hnet import HNet

# The modules get torch on first use, not on `import aunet.models.config`: every command reads its configs through
# this package, and a config error should be reported before the second it takes to import torch.
_LAZY = {"AUNet": "aunet.models.aunet", "AUNetStats": "aunet.models.aunet", "BPETransformer": "aunet.models.bpe",
         "HNet": "aunet.models.hnet", **dict.fromkeys(("Decoder", "Family"), "aunet.models.family"),
         **dict.fromkeys(("FAMILY_CLASSES", "family_of"), "aunet.models.families")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aunet.models' has no attribute {name!r}")


def build_model(config: ModelConfig) -> nn.Module:
    """The module for ``config``: :class:`AUNet`, :class:`HNet` or :class:`BPETransformer`."""
    from aunet.models.aunet import AUNet
    from aunet.models.bpe import BPETransformer
    from aunet.models.hnet import HNet

    if isinstance(config, AUNetConfig):
        return AUNet(config)
    if isinstance(config, HNetConfig):
        return HNet(config)
    if isinstance(config, BPEConfig):
        return BPETransformer(config)
    raise TypeError(f"not a model config: {type(config).__name__}")


__all__ = ["AUNet", "AUNetConfig", "AUNetStats", "BPEConfig", "BPETransformer", "BYTE_VOCAB_SIZE", "Decoder",
           "FAMILY_CLASSES", "Family", "HNet", "HNetConfig", "ModelConfig", "build_model", "family_of",
           "load_model_config", "resolve_config_path", "model_config_from_dict", "swiglu_hidden_dim"]
