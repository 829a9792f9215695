# The front door. `make help` lists the targets; `make run` and `make test` install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
DS ?= $(shell date -u -d yesterday +%F)
PYTEST_ARGS ?=
MLFLOW_PORT ?= 5000

.PHONY: help setup run test test-fast lint airflow-ui mlflow-ui land-demo clean check-java

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: DS=YYYY-MM-DD (logical date, default yesterday UTC), PIPELINE_ENV, PYTEST_ARGS"

check-java: ## Check that Java 17+ is installed (Spark needs it)
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ]; then echo "error: java not found; Spark needs Java 17+: install it (e.g. apt-get install openjdk-17-jre-headless) and rerun" >&2; exit 1; \
	elif [ "$$v" -lt 17 ]; then echo "error: java $$v found; Spark needs Java 17+: install it and put it first on PATH" >&2; exit 1; fi

$(UV):
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found; install Python 3.11 and rerun" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON) --quiet
	@touch $@

setup: check-java $(VENV)/.synced ## Create the virtualenv from the lock (idempotent)

run: setup ## Land the demo clickstream and run the nightly DAG for DS end to end, then print the summary
	$(PY) -m pipelines run --ds $(DS)

land-demo: setup ## Only land the demo clickstream (raw/events) ending at DS
	$(PY) -m pipelines land-demo --ds $(DS)

test: setup ## Run the whole suite (unit, spark and e2e tiers; gpu tests skip without a GPU)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: setup ## Run only the fast tier (no Spark, no DAG runs)
	$(VENV)/bin/pytest -m "not spark and not e2e and not gpu" $(PYTEST_ARGS)

lint: setup ## Lint with ruff (including Airflow's AIR rules)
	$(VENV)/bin/ruff check .

airflow-ui: setup ## Airflow standalone (UI at http://localhost:8080) serving this repository's DAGs
	eval "$$($(PY) -m pipelines env)" && $(PY) -m airflow db migrate >/dev/null && airflow standalone

mlflow-ui: setup ## MLflow UI (http://localhost:$(MLFLOW_PORT)) over the local tracking store
	$(VENV)/bin/mlflow ui --backend-store-uri "$$($(PY) -c 'from pipelines.config import load_config; print(load_config().tracking_uri)')" --port $(MLFLOW_PORT)

clean: ## Remove var/ (lake, Airflow and MLflow state); keeps the virtualenv
	rm -rf var
