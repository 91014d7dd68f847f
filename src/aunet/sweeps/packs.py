"""The packs a sweep reads: one per (data section, family encoding), whatever the sizes, seeds and budgets.

``aunet sweep plan`` lists them with whether each is built; ``aunet data pack --sweep`` builds the missing ones
ahead of the runs (a run builds its own on first use otherwise, taking a lock so that two workers never pack the
same data twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aunet.data.pipeline import DataPipeline
from aunet.models import family_of
from aunet.sweeps.plan import Plan
from aunet.training.config import RunConfig


@dataclass
class PackNeed:
    """One pack of a sweep: the pipeline that builds it, and the runs (ids) that read it."""

    pipeline: DataPipeline
    run_ids: list[str]

    @property
    def label(self) -> str:
        p = self.pipeline
        return f"{p.corpus_label()}: {p.family.unit}s, {p.encoder_label()}"


def _key(config: RunConfig) -> str:
    data = config.identity()["data"]
    data.pop("shuffle_buffer", None)
    return json.dumps([data, family_of(config.model).encoding()], sort_keys=True)


def pipelines(configs: list[RunConfig]) -> list[PackNeed]:
    """The packs the packed runs among ``configs`` read, one per distinct data section and family encoding, in
    first-seen order (streamed runs read none)."""
    needs: dict[str, PackNeed] = {}
    for config in configs:
        if config.data.stream != "packed":
            continue
        key = _key(config)
        if key not in needs:
            needs[key] = PackNeed(DataPipeline(config.data, config.model, config.train.seed), [])
        needs[key].run_ids.append(config.run_id())
    return list(needs.values())


def sweep_packs(plan: Plan) -> list[PackNeed]:
    """The packs of a planned sweep (see :func:`pipelines`)."""
    return pipelines([run.config for run in plan.runs])
