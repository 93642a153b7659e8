# HeteroScale — the two commands: `make run` and `make test`.
# Each creates or reuses .venv and installs what it needs, idempotently (stamps are keyed to pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.stamp-run
TEST_STAMP := $(VENV)/.stamp-test

.PHONY: run test lint typecheck imports unit bench clean help

help:
	@echo "make run   - the embedded default scenario under the HeteroScale policy beside static-peak"
	@echo "make test  - install test dependencies, then lint, type-check, check layering and run every test"
	@echo "make bench - run the benchmarks in benchmarks/ and print their figures"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

# Ray (the optional `--backend ray`; ≈80 MB, ≈8 s to install here) only for its test, which skips
# with a reason where Ray has no wheel for this platform
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e '.[ray]' || echo "Ray did not install: its test will be skipped"
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/heteroscale compare --scenario default --policies heteroscale,static-peak

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

imports: $(TEST_STAMP)
	$(BIN)/lint-imports

# the integration tests run a real Prometheus: Debian's package, installed once (idempotent)
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; }

# one worker per core; a test file stays on one worker, so its module-scoped runs are made once
unit: $(TEST_STAMP) system-deps
	$(BIN)/pytest -q -n auto --dist loadfile

test: lint typecheck imports unit

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/perf_model_fidelity.py
	$(BIN)/python benchmarks/fidelity_request_vs_fluid.py
	$(BIN)/python benchmarks/sim_speed.py
	$(BIN)/python benchmarks/schedule_scale.py
	$(BIN)/python benchmarks/topology_value.py
	$(BIN)/python benchmarks/mix_solver.py
	$(BIN)/python benchmarks/forecast_accuracy.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
