# The venv is made once and reused; the stamp file re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip<26.2"

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/augsearch demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=900 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not postgres" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check ops search service tests benchmarks
	$(BIN)/ruff format --check ops search service tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.augment
	$(BIN)/python -m benchmarks.search_quality --datasets fonts house-numbers digits
	$(BIN)/python -m benchmarks.final_models
	$(BIN)/python -m benchmarks.compress --datasets digits fonts
	$(BIN)/python -m benchmarks.self_training --datasets digits fonts --seeds 3
	$(BIN)/python -m benchmarks.text_quality --sizes 500 full --seeds 5
	$(BIN)/python -m benchmarks.api --seconds 10
	$(BIN)/python -m benchmarks.api --seconds 10 --writers stress
	$(BIN)/python -m benchmarks.load --seconds 60 --clients 64
	$(BIN)/python -m benchmarks.scaling --seconds 2 --per-worker 6
	$(BIN)/python -m benchmarks.scaling --seconds 2 --per-worker 6 --threads

clean:
	rm -rf $(VENV) augsearch-data .pytest_cache .mypy_cache .ruff_cache
