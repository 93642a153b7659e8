# HeteroScale — the three commands: `make run`, `make test` and `make demo`.
# Each creates or reuses .venv and installs what it needs, idempotently (stamps are keyed to pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.stamp-run
TEST_STAMP := $(VENV)/.stamp-test
DEMO_STAMP := $(VENV)/.stamp-demo

.PHONY: run test demo lint typecheck imports unit bench bench-readme bench-policies clean help

help:
	@echo "make run   - the embedded default scenario under the HeteroScale policy beside static-peak"
	@echo "make test  - install test dependencies, then lint, type-check, check layering and run every test"
	@echo "make demo  - the live controller against a simulated cluster, a real Prometheus and a Kubernetes API fake"
	@echo "make bench - run the benchmarks in benchmarks/, record their output in results/benchmarks/, render README"
	@echo "make bench-readme - render README.md's benchmark blocks from results/benchmarks/ (no runs)"
	@echo "make bench-policies - the policy benchmark (suite x contenders, tuned parameters committed): results/ and README"

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

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/heteroscale compare --scenario default --policies heteroscale,static-peak

# needs a prometheus binary on PATH (`make system-deps` installs Debian's); without one it says how to get it
demo: $(DEMO_STAMP)
	$(BIN)/heteroscale demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

imports: $(TEST_STAMP)
	$(BIN)/lint-imports

# the integration tests run a real Prometheus and render the HTML report in headless Chromium: Debian's
# packages, installed once (idempotent)
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; }
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

# one worker per core; a test file stays on one worker, so its module-scoped runs are made once
unit: $(TEST_STAMP) system-deps
	$(BIN)/pytest -q -n auto --dist loadfile

test: lint typecheck imports unit

# every benchmark script (benchmarks/record.py lists them; `make bench BENCH="sim_speed splitwise_mirror"`
# some), each output recorded under results/benchmarks/ with a header (date, machine, load, wall time,
# exit status), then README.md's blocks rendered from the records. A script that misses a target exits
# non-zero: the others still run, the README is still rendered, and make bench then fails
bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/record.py --readme $(BENCH)

# README.md's benchmark blocks from the committed records only (no benchmark runs)
bench-readme: $(TEST_STAMP)
	$(BIN)/python benchmarks/readme.py

# the policy benchmark from the committed tuned parameters (results/tuned.yaml), then the README's block;
# `heteroscale bench --retune --jobs 2` regenerates the tuned parameters first (both print their wall time)
bench-policies: $(RUN_STAMP)
	$(BIN)/heteroscale bench --jobs 2
	$(BIN)/heteroscale bench --readme
	$(BIN)/python benchmarks/record.py --readme policy_targets

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
