"""The registry of model families: ``family_of(config)`` is how every layer above asks about a model config."""

from __future__ import annotations

from aunet.models.config import ModelConfig
from aunet.models.family import AUNetFamily, BPEFamily, Family
from aunet.models.hnet_family import HNetFamily

FAMILY_CLASSES: dict[str, type[Family]] = {"aunet": AUNetFamily, "bpe": BPEFamily, "hnet": HNetFamily}


def family_of(config: ModelConfig) -> Family:
    """The family of ``config``."""
    return FAMILY_CLASSES[config.family](config)
