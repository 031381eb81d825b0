# Quick start: `make demo` and `make test` each set up everything they need (a .venv with pinned deps).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
RATE ?= 20

.PHONY: install demo dev test lint bench clean

install: $(VENV)/.installed

# uv installs the ~440 pinned packages of requirements.lock in seconds (pip would take minutes), compiled
# to bytecode up front so the first Dagster runs do not pay for it.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/analytics-platform demo

dev: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/analytics-platform dev --rate $(RATE)

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check analytics_platform tests
	$(BIN)/ruff format --check analytics_platform tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .platform dbt_project/target dbt_project/logs

# Benchmarks (not tests): BENCH_ARGS=--quick for a smoke run; results in bench/results/.
bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/run.py $(BENCH_ARGS)
