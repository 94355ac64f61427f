# `make run` and `make test` each set everything up on a fresh machine, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-cluster bench-micro clean setup

$(STAMP): pyproject.toml
	@echo "==> creating virtualenv in $(VENV) and installing edgecache (+test extras)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m edge.cli.launch --config config.toml

# strict types and lint first: CI fails on a new violation before the suite runs
lint: $(STAMP)
	@echo "==> ruff check, ruff format --check, mypy --strict (edge origin cluster)"
	$(BIN)/ruff check edge origin cluster
	$(BIN)/ruff format --check edge origin cluster
	$(BIN)/python -m mypy

test: lint
	$(BIN)/python -m pytest -p no:cacheprovider

bench-cluster: $(STAMP)
	$(BIN)/python bench/load/cluster.py

bench-micro: $(STAMP)
	$(BIN)/python -m pytest bench/micro --benchmark-only -p no:cacheprovider -o testpaths=bench -o python_files="bench_*.py"

bench: $(STAMP)
	$(BIN)/python bench/load/hits.py

clean:
	rm -rf $(VENV) .cache-demo
