"""Small run configs over real text for training tests (the data directory comes from AUNET_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aunet.training.config import RunConfig, run_config_from_dict

TINY_AUNET = dict(family="aunet", dims=[32, 48], layers=[1, 1], head_dims=[16, 16], caps=[64, 24],
                  splits=["word@1"], windows=[32, None], ffn_multiple_of=16)
TINY_BPE = dict(family="bpe", dim=32, layers=1, head_dim=16, vocab_size=320, seq_len=24, ffn_multiple_of=16)


def tiny_run(tmp_path: Path, model: dict[str, Any] | None = None, **sections: dict[str, Any]) -> RunConfig:
    """A run of a few steps over Tiny Shakespeare (tail split) that finishes in seconds on CPU."""
    raw = {
        "name": "test",
        "model": model or TINY_AUNET,
        "data": {"corpus": "tinyshakespeare", "val_bytes": 4096, "num_workers": 0, "shuffle_buffer": 16,
                 **sections.get("data", {})},
        "train": {"max_steps": 6, "batch_size": 4, "val_every_steps": 2, "lr": 3e-3,
                  "results_dir": str(tmp_path / "runs"), **sections.get("train", {})},
        "trainer": {"accelerator": "cpu", "progress_bar": False, **sections.get("trainer", {})},
    }
    if "train" in sections and "budget_flops" in sections["train"]:
        raw["train"].pop("max_steps")
    return run_config_from_dict(raw)
