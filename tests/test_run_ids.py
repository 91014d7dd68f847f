"""Run ids are hashes of resolved configs: a refactor must not change them, or finished runs would be trained again.

``tests/fixtures/run_ids.json`` holds the run ids of every preset (as a run config with default sections) and of
every run of every sweep in ``sweeps/`` (planned without the corpus: fixed LR, batch and bytes per token, as
``tests/sweeps/test_plan.py`` plans them), computed by the code before the family interface and the run-record
schema were introduced. Regenerate it only for a change that is meant to rename runs:
``python -m tests.test_run_ids --write``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from aunet.presets import list_presets
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.spec import load_sweep
from aunet.training.config import run_config_from_dict
from tests.sweeps.helpers import fixed_hparams

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "run_ids.json"
BYTES_PER_TOKEN = 2.5  # any fixed value: the sizes it gives are what is compared


def preset_run_ids() -> dict[str, str]:
    return {name: run_config_from_dict({"model": {"preset": name}, "train": {"budget_flops": 1e12}}).run_id()
            for name in list_presets()}


def sweep_run_ids(path: Path) -> list[str]:
    """Run ids of every run of the sweep at ``path``, in plan order (with seeds, so repeats show)."""
    spec = fixed_hparams(load_sweep(path))
    spec = dataclasses.replace(spec, bytes_per_token=spec.bytes_per_token or BYTES_PER_TOKEN)
    return [f"{run.run_id}/{run.seed}" for run in plan_sweep(spec, measure=False).runs]


def current() -> dict[str, object]:
    return {"presets": preset_run_ids(),
            "sweeps": {p.name: sweep_run_ids(p) for p in sorted((REPO / "sweeps").glob("*.yaml"))}}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def test_every_preset_keeps_its_run_id(recorded):
    assert preset_run_ids() == recorded["presets"]


@pytest.mark.parametrize("sweep", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_every_sweep_plans_the_same_runs(sweep, recorded):
    assert sweep in recorded["sweeps"], f"{sweep}: new sweep; add it with python -m tests.test_run_ids --write"
    assert sweep_run_ids(REPO / "sweeps" / sweep) == recorded["sweeps"][sweep]


if __name__ == "__main__":
    if "--write" in sys.argv:
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIXTURE}")
