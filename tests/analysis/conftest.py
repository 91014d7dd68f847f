"""Fixture results folders, built once per session under a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analysis.builders import (
    BUDGETS,
    write_chunking_results,
    write_isoflop_results,
    write_lr_grid_results,
    write_minimal_results,
    write_scaling_results,
    write_tuning_results,
    write_variant_results,
)


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake repository root holding results/scaling, results/tuning, results/minimal, results/isoflop (and
    isoflop-partial), results/lrgrid, results/variants, results/chunking and results/runs."""
    root = tmp_path_factory.mktemp("repo")
    write_scaling_results(root)
    write_isoflop_results(root)
    write_isoflop_results(root, "isoflop-partial", missing=(("bpe", BUDGETS[-1], 2.0), ("bpe", BUDGETS[-1], 1.0)))
    write_lr_grid_results(root)
    write_variant_results(root)
    write_tuning_results(root)
    write_minimal_results(root)
    write_chunking_results(root)
    return root


@pytest.fixture(scope="session")
def scaling_results(results_root: Path) -> Path:
    return results_root / "results" / "scaling"


@pytest.fixture(scope="session")
def tuning_results(results_root: Path) -> Path:
    return results_root / "results" / "tuning"


@pytest.fixture(scope="session")
def minimal_results(results_root: Path) -> Path:
    return results_root / "results" / "minimal"
