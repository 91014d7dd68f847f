"""Test-wide settings: offline hub libraries, headless plotting, a hypothesis profile, the data directory."""

from __future__ import annotations

import os
import subprocess

# Read at import time by datasets / huggingface_hub: set before anything imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# One intra-op thread, for this process and the training subprocesses tests start: the models here are microscopic,
# and on a loaded 2-core machine two threads per process made the suite several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Caches (trained tokenizers) go to a throwaway folder, never into the repository or the read-only data dir.
os.environ.setdefault("AUNET_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="aunet-test-cache-"))

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.threads import single_thread  # noqa: E402

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(1)


def _sinfo_answers() -> str | None:
    """None when a SLURM controller answers ``sinfo``, else why not (one line)."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        return "no sinfo on PATH"
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if done.returncode != 0:
        return ((done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])[:200]
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
    slurm_items = [item for item in items if "slurm" in item.keywords]
    if slurm_items and (why := _sinfo_answers()) is not None:
        skip_slurm = pytest.mark.skip(reason=f"needs a SLURM cluster answering sinfo ({why}); make test-slurm "
                                             "starts a local one")
        for item in slurm_items:
            item.add_marker(skip_slurm)


@pytest.fixture(autouse=True)
def no_cluster_unless_slurm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked ``slurm`` see no SLURM cluster, even on a machine that has one: `aunet sweep slurm` checks
    its --cpus against sinfo, and the unit tests must not depend on the machine's partitions."""
    if request.node.get_closest_marker("slurm") is None:
        monkeypatch.setenv("SLURM_CONF", os.devnull + "/no-cluster")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test on one torch thread, whatever an earlier test (a CLI call with ``--threads``) left behind."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory (``AUNET_DATA_DIR``; `make test` sets it). Tests that need real text skip without it."""
    value = os.environ.get("AUNET_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("AUNET_DATA_DIR is not set to a data directory (make test sets it to ../shared/data)")
    return Path(value).resolve()


@pytest.fixture(scope="session")
def english_text(data_dir: Path) -> bytes:
    """About 200 KB of real English prose (Tiny Shakespeare)."""
    return (data_dir / "corpora" / "tinyshakespeare" / "input.txt").read_bytes()[:200_000]
