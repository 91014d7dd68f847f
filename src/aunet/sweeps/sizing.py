"""Choosing a family's model for a target cost in FLOPs per byte: from a template, a ladder, or a fixed model.

FLOPs per byte come from the one formula (:func:`aunet.flops.flops_report`): per byte for AU-Net, per token divided
by the measured bytes per token for BPE. A template is searched over the deepest stage's width; for each width
the depth that hits the target is solved exactly (FLOPs grow linearly with the number of deepest-stage layers), and
among the sizes within tolerance the one closest to the template's width-per-layer ``aspect`` wins.

Floors keep every size a sensible model (the family's ``floor_violations``): each stage at least ``min_heads`` heads
wide (default 2), AU-Net stages never narrower than the stage before them, at least one layer on each side of every
non-deepest stage. A template's widths are raised to the floors before the search, so a small budget gets a small
but well-formed model, or a one-line error when even the floor model is too expensive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aunet.config import read_yaml
from aunet.errors import ConfigError, excerpt
from aunet.flops import flops_report
from aunet.models import FAMILY_CLASSES, ModelConfig, family_of, model_config_from_dict
from aunet.models.loading import resolve_config_path


@dataclass(frozen=True)
class SizedModel:
    """A model chosen for a target: its config, its FLOPs per byte, and the relative gap to the target."""

    config: ModelConfig
    flops_per_byte: float
    gap: float
    in_range: bool


def flops_per_byte(config: ModelConfig, bytes_per_token: float) -> float:
    return flops_report(config).flops_per_unit / family_of(config).bytes_per_unit(bytes_per_token)


def _model_dict(entry: Any, overrides: dict, key: str) -> dict:
    if isinstance(entry, str):  # a preset name or a YAML file
        section = read_yaml(resolve_config_path(entry)).get("model")
        if not isinstance(section, dict):
            raise ConfigError(key, f"{excerpt(entry)} has no model section")
        return {**section, **overrides}
    if isinstance(entry, dict):
        return {**entry, **overrides}
    raise ConfigError(key, f"expected a preset name or a model mapping, got {excerpt(entry)}")


def build_config(entry: Any, overrides: dict, key: str) -> ModelConfig:
    try:
        return model_config_from_dict(_model_dict(entry, overrides, key), prefix=f"{key}.")
    except ConfigError as exc:
        if exc.key.startswith(key):
            raise
        raise ConfigError(f"{key}.{exc.key}", exc.message) from None


def from_ladder(ladder: list, overrides: dict, target: float, bytes_per_token: float, tolerance: float,
                key: str) -> SizedModel:
    """The ladder entry whose FLOPs per byte are closest to ``target`` (in log space)."""
    configs = [build_config(entry, overrides, f"{key}[{i}]") for i, entry in enumerate(ladder)]
    costs = [flops_per_byte(c, bytes_per_token) for c in configs]
    best = min(range(len(configs)), key=lambda i: abs(math.log(costs[i] / target)))
    in_range = min(costs) * (1 - tolerance) <= target <= max(costs) * (1 + tolerance)
    return SizedModel(configs[best], costs[best], costs[best] / target - 1, in_range)


def _template_config(t: dict, width: int, layers: int, bytes_per_token: float, key: str,
                     ffn: int | None = None) -> ModelConfig:
    """The template's model with deepest-stage ``width`` and ``layers`` (and deepest FFN size ``ffn`` if given)."""
    return FAMILY_CLASSES[t["family"]].from_template(t, width, layers, bytes_per_token, key, ffn,
                                                     int(t.get("min_heads", DEFAULT_MIN_HEADS)))


# The size search's own keys, and every model key some family's template may give (each family lists its own).
SEARCH_KEYS = {"aspect", "width_step", "max_width", "max_layers", "ffn_range", "min_heads"}
TEMPLATE_KEYS = SEARCH_KEYS.union(*(f.template_fields for f in FAMILY_CLASSES.values()))
DEFAULT_MIN_HEADS = 2  # a one-head stage cannot attend to two things at once; the floor every template gets


def check_template(template: dict, key: str) -> dict:
    """Unknown or missing template keys are ConfigErrors naming the key."""
    unknown = set(template) - TEMPLATE_KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"{key}.{name}", f"unknown template key; valid keys: {', '.join(sorted(TEMPLATE_KEYS))}")
    family = FAMILY_CLASSES.get(template.get("family"))  # type: ignore[arg-type]
    if family is None:
        raise ConfigError(f"{key}.family", f"expected one of {', '.join(FAMILY_CLASSES)}, got "
                                           f"{excerpt(template.get('family'))}")
    for name in family.template_keys:
        if name not in template:
            raise ConfigError(f"{key}.{name}", f"required for a {family.name} template")
    foreign = set(template) - SEARCH_KEYS - family.template_fields
    if foreign:  # another family's key: the sizing would drop it without a word
        valid = sorted(SEARCH_KEYS | family.template_fields)
        raise ConfigError(f"{key}.{sorted(foreign)[0]}", f"not a key of a {family.name} template; valid keys: "
                                                         f"{', '.join(valid)}")
    if int(template.get("min_heads", DEFAULT_MIN_HEADS)) < 1:
        raise ConfigError(f"{key}.min_heads", "must be at least 1")
    family.check_template(template, key)
    return template


def from_template(template: dict, overrides: dict, target: float, bytes_per_token: float, tolerance: float,
                  key: str) -> SizedModel:
    """Search the deepest stage's width; solve its depth; then set its FFN size to hit the target.

    FLOPs per byte are linear in the deepest stage's number of layers and in its SwiGLU size, so for each width the
    depth is solved exactly (rounded both ways), and among the sizes whose FFN can close the remaining gap inside
    ``ffn_range`` (default 2 to 4 times the width, around the usual 8/3) the one nearest ``aspect`` width per layer
    wins. Tiny models change cost in big steps with each layer or width step; the FFN takes up the rest.
    """
    t = check_template({**template, **overrides}, key)
    FAMILY_CLASSES[t["family"]].check_searchable(t, key)
    step = int(t.get("width_step", t.get("head_dim", 0) or max(t.get("head_dims", [32]))))
    head = int(t.get("head_dim", 0) or t.get("head_dims", [32])[-1])
    smallest = int(t.get("min_heads", DEFAULT_MIN_HEADS)) * head  # the floor of the searched (deepest) width
    aspect = float(t.get("aspect", 64))
    max_width, max_layers = int(t.get("max_width", 8192)), int(t.get("max_layers", 64))
    ffn_lo, ffn_hi = t.get("ffn_range", [2.0, 4.0])
    multiple = 8  # FFN sizes stay multiples of 8 for the matmul kernels

    def cost(width: int, layers: int, ffn: int | None = None) -> float:
        return flops_per_byte(_template_config(t, width, layers, bytes_per_token, key, ffn), bytes_per_token)

    options: list[tuple[float, float, int, int, int]] = []  # (aspect penalty, gap, width, layers, ffn)
    for width in range(step, max_width + 1, step):
        if width < smallest:
            continue
        one, two = cost(width, 1), cost(width, 2)
        per_layer, base = two - one, 2 * one - two
        if per_layer <= 0:
            continue
        exact = (target - base) / per_layer
        for layers in {max(1, math.floor(exact)), max(1, math.ceil(exact))}:
            if layers > max_layers:
                continue
            lo, hi = int(ffn_lo * width), int(ffn_hi * width)
            at_lo, at_hi = cost(width, layers, lo), cost(width, layers, hi)
            slope = (at_hi - at_lo) / (hi - lo)
            ffn = lo + (target - at_lo) / slope if slope > 0 else lo
            ffn = int(min(max(ffn, lo), hi) // multiple * multiple) or multiple
            gap = abs(cost(width, layers, ffn) / target - 1)
            options.append((abs(math.log(width / layers / aspect)), gap, width, layers, ffn))
    if not options:
        raise ConfigError(key, f"no size of this template reaches {target:.3g} FLOPs per byte; raise max_width")
    within = [o for o in options if o[1] <= tolerance]
    _, gap, width, layers, ffn = min(within) if within else min(options, key=lambda o: o[1])
    config = _template_config(t, width, layers, bytes_per_token, key, ffn)
    actual = flops_per_byte(config, bytes_per_token)
    return SizedModel(config, actual, actual / target - 1, bool(within))


def floor_cost(family_spec: Any, bytes_per_token: float, key: str) -> float | None:
    """FLOPs per byte of the smallest well-formed model of a template family (deepest stage at its floor width with
    one layer, the smallest FFN the search allows), or None for ladders and fixed models."""
    if family_spec.template is None:
        return None
    t = check_template({**family_spec.template, **family_spec.overrides}, f"{key}.template")
    head = int(t.get("head_dim", 0) or t.get("head_dims", [32])[-1])
    step = int(t.get("width_step", head))
    smallest = int(t.get("min_heads", DEFAULT_MIN_HEADS)) * head
    width = -(-smallest // step) * step
    ffn = max(8, int(t.get("ffn_range", [2.0, 4.0])[0] * width) // 8 * 8)
    return flops_per_byte(_template_config(t, width, 1, bytes_per_token, key, ffn), bytes_per_token)


def _budget_entry(ladder: dict, budget: float, key: str) -> Any:
    for label, entry in ladder.items():
        try:
            if abs(float(label) / budget - 1) < 1e-6:
                return entry
        except (TypeError, ValueError):
            raise ConfigError(f"{key}.{label}", "ladder keys must be budgets in FLOPs, e.g. 1.0e+19") from None
    raise ConfigError(key, f"no model for budget {budget:.3g}; add it to the ladder or use a list ladder")


def size_for(family_spec: Any, target: float, bytes_per_token: float, tolerance: float, key: str,
             budget: float | None = None) -> SizedModel:
    """The model of ``family_spec`` (a :class:`~aunet.sweeps.spec.FamilySpec`) for ``target`` FLOPs per byte.

    A ladder given as a mapping ``budget -> model`` fixes the model per budget (the paper's own assignments)."""
    if family_spec.template is not None:
        return from_template(family_spec.template, family_spec.overrides, target, bytes_per_token, tolerance,
                             f"{key}.template")
    if isinstance(family_spec.ladder, dict):
        entry = _budget_entry(family_spec.ladder, budget or 0.0, f"{key}.ladder")
        config = build_config(entry, family_spec.overrides, f"{key}.ladder")
        cost = flops_per_byte(config, bytes_per_token)
        return SizedModel(config, cost, cost / target - 1, True)
    if family_spec.ladder is not None:
        return from_ladder(family_spec.ladder, family_spec.overrides, target, bytes_per_token, tolerance,
                           f"{key}.ladder")
    config = build_config(family_spec.model, family_spec.overrides, f"{key}.model")
    cost = flops_per_byte(config, bytes_per_token)
    return SizedModel(config, cost, cost / target - 1 if target else 0.0, True)
