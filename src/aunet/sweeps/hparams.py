"""Learning rate and batch size per budget: the paper's laws, laws fitted by ``aunet sweep tune``, or fixed values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aunet.errors import ConfigError

# Paper v1 (App. A): C in FLOPs; batch in the family's own units (bytes for AU-Net, tokens for BPE).
PAPER_LAWS = {
    "aunet": {"batch": (0.66, 0.321, "bytes"), "lr": (6.6, -0.176)},
    "bpe": {"batch": (29.9, 0.231, "tokens"), "lr": (19.3, -0.177)},
}


def paper_law(name: str) -> dict[str, tuple]:
    """The paper's laws for a family or group (``bpe*``: BPE's, anything else, a byte model: AU-Net's)."""
    return PAPER_LAWS["bpe" if name.startswith("bpe") else "aunet"]


@dataclass(frozen=True)
class Law:
    """``value = coefficient * C ** exponent``."""

    coefficient: float
    exponent: float

    def __call__(self, budget: float) -> float:
        return self.coefficient * budget**self.exponent


@dataclass(frozen=True)
class Hyperparameters:
    lr: float
    batch_bytes: float
    source: str


def read_law_file(path: str | Path, group: str) -> tuple[Law, Law]:
    """Fitted laws written by ``aunet sweep tune``: ``{group: {"lr": {...}, "batch_bytes": {...}}}``."""
    p = Path(path)
    if p.exists() and not p.is_file():  # a pipe would block the read, a folder fail with another error
        raise ConfigError("hparams.law", f"{p}: not a regular file (a folder, pipe or device); give the laws.json "
                                         "that 'aunet sweep tune' wrote, or use law: paper")
    try:
        data = json.loads(p.read_text())
        entry = data[group]
        return (Law(float(entry["lr"]["coefficient"]), float(entry["lr"]["exponent"])),
                Law(float(entry["batch_bytes"]["coefficient"]), float(entry["batch_bytes"]["exponent"])))
    except FileNotFoundError:
        raise ConfigError("hparams.law", f"{p}: no such file; run 'aunet sweep tune' or use law: paper") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError("hparams.law", f"{p}: not a law file with '{group}' lr and batch_bytes laws") from None


def hyperparameters(spec, group: str, budget: float, bytes_per_token: float, key: str,
                    law_key: str | None = None) -> Hyperparameters:
    """LR and batch (bytes per step) of ``group`` (aunet or bpe) at ``budget`` from an :class:`HParams` spec.

    ``law_key``: the entry of a fitted-law file to read (a family such as ``aunet3`` for per-family laws); default
    ``group``. The paper's laws exist per model family only."""
    if spec is None:
        raise ConfigError(key, f"no hyperparameters for '{group}'; add hparams.{group} (law: paper, or lr and "
                               "batch_bytes)")
    if spec.law is None:
        lr, batch, source = spec.lr, spec.batch_bytes, "fixed"
    elif spec.law == "paper":
        (bk, be, unit), (lk, le) = paper_law(group)["batch"], paper_law(group)["lr"]
        batch = bk * budget**be * (bytes_per_token if unit == "tokens" else 1.0)
        lr, source = lk * budget**le, "paper"
    else:
        lr_law, batch_law = read_law_file(spec.law, law_key or group)
        lr, batch, source = lr_law(budget), batch_law(budget), f"fitted:{spec.law}"
    return Hyperparameters(lr * spec.lr_scale, batch * spec.batch_scale, source)
