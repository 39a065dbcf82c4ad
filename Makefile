# One Makefile for people and CI. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install run lint format typecheck test pytest test-browser chaos chaos-short bench bench-quick clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@bash .ci/venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install pyBTC with its test and dev tools

run: $(STAMP)  ## run a node (devnet, data in ./data, embedded Redis) until Ctrl-C
	$(BIN)/pybtc up

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)  ## mypy --strict on pybtc and services
	$(BIN)/mypy

pytest: $(STAMP)  ## the test suite only (no browser or chaos tests)
	$(BIN)/pytest -m "not browser and not chaos" $(PYTEST_ARGS)

test: lint typecheck pytest  ## everything CI checks: lint, types, tests

test-browser: $(STAMP)  ## browser tests: Debian's chromium (installed if missing) with Playwright
	bash scripts/install-chromium.sh
	$(BIN)/pytest -m browser $(PYTEST_ARGS)

chaos: $(STAMP)  ## soak and chaos: 3 nodes under load, kill -9 and partitions for 10 min; prints figures
	$(BIN)/python -m tests.chaos --seconds $(or $(PYBTC_CHAOS_SECONDS),600) $(if $(PYBTC_CHAOS_SEED),--seed $(PYBTC_CHAOS_SEED))

chaos-short: $(STAMP)  ## the chaos run as CI runs it: 75 s of faults (PYBTC_CHAOS_SECONDS), ~1.5 min
	$(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)

bench: $(STAMP)  ## benchmarks beside the tutorial's node (~15 min): prints and writes docs/performance.md
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)  ## the same benchmarks on smaller chains (~3 min)
	$(BIN)/python bench/run.py --quick

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
