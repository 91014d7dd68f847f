"""A microscopic sweep over Tiny Shakespeare whose runs take a second or two each (one-head floors: these sweeps test
the machinery, not model shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MICRO = {
    "name": "micro",
    "data": {"corpus": "tinyshakespeare", "val_bytes": 2048, "num_workers": 0, "shuffle_buffer": 8},
    "budgets": [1.0e9, 3.0e9],
    "size": {"rule": "data_ratio", "gamma_bytes": 1.0, "tolerance": 0.03},
    "hparams": {"aunet": {"lr": 3.0e-3, "batch_bytes": 256}, "bpe": {"lr": 3.0e-3, "batch_bytes": 256}},
    "train": {"val_every_steps": 1000},
    "trainer": {"progress_bar": False, "accelerator": "cpu"},
    "families": {
        "bpe": {"template": {"family": "bpe", "head_dim": 8, "vocab_size": 300, "seq_bytes": 64,
                             "ffn_multiple_of": 8, "width_step": 8, "aspect": 16,
                             "min_heads": 1}},
        "aunet2": {"template": {"family": "aunet", "widths": [0.5, 1.0], "head_dims": [8, 8], "caps": [64, 20],
                                "splits": ["word@1"], "windows": [16, None], "layers": [1, None],
                                "ffn_multiple_of": 8, "width_step": 8, "aspect": 16, "min_heads": 1}},
    },
}


def write_sweep(tmp_path: Path, **changes: Any) -> Path:
    spec = {**MICRO, "results_dir": str(tmp_path / "results"), **changes}
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fixed_hparams(spec: Any) -> Any:
    """The sweep with fixed LR and batch for every hyperparameter group (shapes and bytes do not depend on them;
    fitted-law files may not exist). A family may name its own group (``hparams: aunet2``): those are fixed too."""
    from dataclasses import replace

    from aunet.models import FAMILY_CLASSES
    from aunet.sweeps.spec import HParams

    groups = {*FAMILY_CLASSES, *spec.hparams}
    return replace(spec, hparams={g: HParams(lr=1e-2, batch_bytes=4096) for g in sorted(groups)})



def stand_in_summary(run_dir: Path, config: Any = None, val_bpb: float = 1.0) -> dict[str, Any]:
    """Write the ``summary.json`` of a stand-in for training and return it: a record every reader accepts as a
    finished run's (the fields and numbers :func:`aunet.training.summary.read_summary` checks), with the planned
    run's config fingerprint when ``config`` (its :class:`~aunet.training.config.RunConfig`) is given."""
    from aunet.io import atomic_write_json

    record = {"run_id": Path(run_dir).name, "family": config.model.family if config is not None else "aunet",
              "val_bpb": val_bpb, "val_loss": val_bpb, "params": 1, "steps": 1, "flops_spent": 1.0}
    if config is not None:
        record["config_fingerprint"] = config.fingerprint()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / "summary.json", record)
    return record
