# Quick start: `make demo` and `make test` each set up everything they need (a .venv with pinned deps).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
RATE ?= 20

.PHONY: install demo dev test test-fast lint docs bench soak clean

install: $(VENV)/.installed

# uv installs the ~440 pinned packages of requirements.lock in seconds (pip would take minutes), compiled
# to bytecode up front so the first Dagster runs do not pay for it. Then the JavaScript and CSS of the API's
# pages (/docs, /graphql), pinned npm releases, so those pages work without the internet.
$(VENV)/.installed: pyproject.toml requirements.lock analytics_platform/serving/api/assets.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m analytics_platform.serving.api.assets
	touch $@

# Tools the tests run that cannot share the platform's pins, in their own venv: docker-compose 1.29.2
# validates docker-compose.yml offline (see tests/compose-requirements.txt). Rebuilt when its pins change.
TOOLS := .tools
.PHONY: tools
tools: $(TOOLS)/.installed

$(TOOLS)/.installed: tests/compose-requirements.txt | $(VENV)/.installed
	$(BIN)/uv venv --quiet --clear --python $(PYTHON) $(TOOLS)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(TOOLS)/bin/python tests/compose-requirements.txt
	touch $@

# No target puts the venv on PATH: every command finds its tools (dbt, dagster) next to its interpreter.
demo: install
	$(BIN)/analytics-platform demo

dev: install
	$(BIN)/analytics-platform dev --rate $(RATE)

# Prometheus and Alertmanager (Debian's packages) on ops/, scraping what `make dev` runs; Ctrl-C stops both.
.PHONY: ops
ops: install
	$(BIN)/analytics-platform ops

# Everything: unit tests, the real broker, Iceberg, dbt and Dagster, and the fault-injection tests. The
# Superset tests (marker `superset`) are the next CI stage, `make test-superset`.
test: install tools
	$(BIN)/pytest -m "not superset" $(PYTEST_ARGS)

# The unit tests of pure logic only (no broker, dbt or Dagster run): under a minute.
test-fast: install
	$(BIN)/pytest -m fast $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check analytics_platform tests bench
	$(BIN)/ruff format --check analytics_platform tests bench
	$(BIN)/mypy
	$(BIN)/sqlfluff lint dbt_project

# Apache Superset on the published marts with the repo's dashboards (docs/bi.md). It needs SQLAlchemy 1.4, so
# it has a venv of its own (~700 MB, ~1 min with uv), one per checkout: `make bi` and the tests share it.
PLATFORM_SUPERSET_VENV ?= $(CURDIR)/.superset/venv
.PHONY: bi superset test-superset
superset: install
	PLATFORM_SUPERSET_VENV=$(PLATFORM_SUPERSET_VENV) $(BIN)/analytics-platform bi install

bi: install
	PLATFORM_SUPERSET_VENV=$(PLATFORM_SUPERSET_VENV) $(BIN)/analytics-platform bi start

test-superset: install
	TEST_SUPERSET_VENV=$(PLATFORM_SUPERSET_VENV) $(BIN)/pytest -m superset $(PYTEST_ARGS)

# docs/configuration.md is generated from the Settings fields' descriptions, docker/postgres-init.sql from the
# database roles' statements (tests check that both are current).
docs: install
	$(BIN)/python -c "from analytics_platform.settings import settings_reference; print(settings_reference(), end='')" > docs/configuration.md
	$(BIN)/python -c "from analytics_platform.security.roles import init_script; print(init_script(), end='')" > docker/postgres-init.sql

clean:
	rm -rf $(VENV) .platform dbt_project/target dbt_project/logs

# Benchmarks (not tests): BENCH_ARGS=--quick for a smoke run; results in bench/results/.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# An hour of `analytics-platform dev` at 2,000 events/s (BENCH_ARGS=--quick: 5 minutes); see bench/soak.py.
soak: install
	$(BIN)/python bench/run.py --stages soak $(BENCH_ARGS)
