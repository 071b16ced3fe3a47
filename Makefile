# Two commands for a new user: `make run` (set up and serve) and `make test` (set up and test).
# Both install the lock file requirements/dev.txt (exact versions, hashes checked) into .venv;
# `make lock` refreshes the lock files from pyproject.toml (UPGRADE=1: to the newest releases).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet
# The pip that installs the lock: a newer one is taken on purpose, not by a fresh clone.
PIP_VERSION ?= 26.3

.PHONY: run test test-fast lint lock train bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip==$(PIP_VERSION)

# The locked dependencies (dev tools included), then the project itself, editable.
$(VENV)/.installed: requirements/dev.txt pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) --require-hashes -r requirements/dev.txt
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

run: $(VENV)/.installed  ## serve the models in models/ on port 8000
	$(if $(HOST),HOST=$(HOST)) $(if $(PORT),PORT=$(PORT)) $(BIN)/python -m app

test: $(VENV)/.installed  ## run the whole test suite
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed  ## the edit-test loop: unit and in-process API tests, offline, no server processes
	TESTS_OFFLINE=1 $(BIN)/python -m pytest tests/unit tests/api -m 'not slow'

lint: $(VENV)/.installed  ## ruff, ruff format, mypy --strict on app/, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

lock: $(VENV)/.installed  ## refresh requirements/*.txt from pyproject.toml
	UV=$(BIN)/uv $(if $(UPGRADE),UPGRADE=1) requirements/lock.sh

train: $(VENV)/.installed  ## retrain both models (recipe v2) into models/<name>/<next version>/, and measure them
	$(BIN)/python -m training.sentiment --recipe v2
	$(BIN)/python -m training.digits --recipe v2
	$(BIN)/python -m evaluation models/sentiment models/digits --write

bench: $(VENV)/.installed  ## batched vs unbatched, protocols, swaps (~11 min); one worker vs WORKERS=auto (~5 min); the limit point (~3 min)
	$(BIN)/python -m bench
	$(BIN)/python -m bench --configs batched,batched-auto --protocols '' --no-reload \
		--output bench/results-auto.json --plot bench/throughput_latency-auto.png
	$(BIN)/python -m bench.capacity --update-docs
	$(BIN)/python -m bench.limit

soak: $(VENV)/.installed
	$(BIN)/python -m pytest -m soak -s

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
