# Two commands for a new user: `make run` (set up and serve) and `make test` (set up and test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint train bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed  ## serve the models in models/ on port 8000
	$(if $(HOST),HOST=$(HOST)) $(if $(PORT),PORT=$(PORT)) $(BIN)/python -m app

test: $(VENV)/.installed-dev  ## run the whole test suite
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev  ## ruff, ruff format, mypy --strict on app/, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

train: $(VENV)/.installed-dev  ## retrain both models into models/<name>/<next version>/
	$(BIN)/python -m training.sentiment
	$(BIN)/python -m training.digits

bench: $(VENV)/.installed-dev  ## batched vs unbatched at concurrency 1/16/64 (~7 min): bench/results.json, bench/throughput_latency.png
	$(BIN)/python -m bench

soak: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m soak -s

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
