# aunet developer commands. `make test` is the test command (CI runs it through .ci/run).
#
# The virtual environment is created on first use with the CPU build of torch installed first and pinned by
# constraints-cpu.txt, so no later install can pull a multi-GB CUDA build. Elsewhere than this project's machines,
# point TORCH_SPEC at a CPU index, e.g.
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.aunet-installed

# Real corpora and benchmark files are read from a data directory, never committed. Default: ../shared/data.
AUNET_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export AUNET_DATA_DIR
# Trained tokenizers are cached under the project (the data directory may be read-only).
AUNET_CACHE_DIR ?= $(CURDIR)/cache
export AUNET_CACHE_DIR

PYTEST_ARGS ?=
# Where `make demo` writes its sweep (the table, plots and fits under $(DEMO_DIR)/demo, run folders under runs/).
DEMO_DIR ?= build/demo
# Runs of the demo trained at once: its models are too small to use two threads each, so two runs of one thread each
# train about twice as fast on two cores (one where the machine has one core).
DEMO_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); if [ "$$n" -ge 2 ]; then echo 2; else echo 1; fi)

.PHONY: help install lint test test-slurm demo bench-levels bench-train bench-generation clean

help:
	@echo "make install       create $(VENV) (CPU torch) and install aunet with its test and wandb extras"
	@echo "make lint          ruff over src/ and tests/ (part of make test)"
	@echo "make test          the linter, then the test suite (creates $(VENV) when missing); not the slurm tests"
	@echo "make test-slurm    start a one-node SLURM (scripts/local-slurm.sh, installs it as root where missing),"
	@echo "                   run the tests marked slurm against it, stop it (about 10 min on 2 cores)"
	@echo "make demo          the fair protocol in miniature: plan and fairness table, the packed data, BPE and"
	@echo "                   AU-Net-1..4 at two sizes and three budgets each, evaluated and analysed (about 8 min"
	@echo "                   on 2 cores)"
	@echo "make bench-levels  measure compute_levels throughput on English prose"
	@echo "make bench-train   training throughput of BPE and AU-Net-1..4 at matched FLOPs per byte (aunet bench --quick)"
	@echo "make bench-generation  cascaded AU-Net generation against full recomputation (1k, 4k context)"
	@echo "make clean         remove caches (keeps $(VENV))"

$(STAMP): pyproject.toml setup.py constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -c constraints-cpu.txt -e ".[test,wandb]"
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

# The tests marked slurm need a cluster and take minutes: `make test-slurm` runs them (see README, SLURM).
test: lint
	$(PY) -m pytest -m "not slurm" $(PYTEST_ARGS)

# Stops the cluster it started even when a test fails, and exits with pytest's status.
test-slurm: $(STAMP)
	scripts/local-slurm.sh start
	eval "$$(scripts/local-slurm.sh env)"; $(PY) -m pytest -m slurm $(PYTEST_ARGS); status=$$?; \
	scripts/local-slurm.sh stop; exit $$status

demo: $(STAMP)
	$(PY) -m aunet sweep plan sweeps/demo.yaml --no-probe --results $(DEMO_DIR)
	$(PY) -m aunet data pack --sweep sweeps/demo.yaml
	$(PY) -m aunet sweep run sweeps/demo.yaml --results $(DEMO_DIR) --workers $(DEMO_WORKERS)
	$(PY) -m aunet sweep eval sweeps/demo.yaml --results $(DEMO_DIR)
	$(PY) -m aunet analyze $(DEMO_DIR)/demo
	@echo
	@echo "demo done: table $(DEMO_DIR)/demo/runs.csv, plots in $(DEMO_DIR)/demo/plots/, fits $(DEMO_DIR)/demo/fits.json"

bench-levels: $(STAMP)
	$(PY) -m aunet.bench.levels

bench-train: $(STAMP)
	$(PY) -m aunet bench --quick --no-write

bench-generation: $(STAMP)
	$(PY) -m aunet.bench.generation

clean:
	rm -rf .pytest_cache .hypothesis build dist src/*.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
