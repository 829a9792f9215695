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
# make test and make test-faults: two pytest-xdist workers, a test module (or the modules sharing the
# trained registry) to a worker (tests/conftest.py). Alone, the suite kept one of two cores busy: its
# tests wait on the processes they start. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)
MLFLOW_PORT ?= 5000

.PHONY: help setup run test test-faults test-fast lint airflow-ui mlflow-ui land-demo clean check-java
.PHONY: stack-up stack-status stack-down test-stack redis-server chromium

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: DS=YYYY-MM-DD (logical date, default yesterday UTC), PIPELINE_ENV, PYTEST_ARGS, TEST_WORKERS (make test, test-faults: 2; 0 = one process)"

check-java: ## Check that Java 17+ is installed (Spark needs it)
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ]; then echo "error: java not found; Spark needs Java 17+: install it (e.g. apt-get install openjdk-17-jre-headless) and rerun" >&2; exit 1; \
	elif [ "$$v" -lt 17 ]; then echo "error: java $$v found; Spark needs Java 17+: install it and put it first on PATH" >&2; exit 1; fi

$(UV):
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found; install Python 3.11 and rerun" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --extra cluster: the production stack's Celery, Redis and PostgreSQL clients (make stack-up) come
# from the same lock. A virtualenv made before pyspark-client was kept out of the lock gets pyspark
# reinstalled: removing pyspark-client deletes files the two distributions shared.
# GPU=1 (make setup GPU=1, on a GPU host): the gpu extra too (JAX with CUDA 12 wheels); the choice is
# kept in $(VENV)/.gpu, so later targets keep it instead of syncing it away.
# --compile-bytecode: the installed packages' .pyc are written once, here. Without them a process
# started with PYTHONDONTWRITEBYTECODE (set on these machines) compiles every module it imports, every
# time: TensorFlow took 10.8 s to import instead of 5.5 s, in each task process of a Celery worker.
GPU ?= $(if $(wildcard $(VENV)/.gpu),1,)
SYNCED := $(VENV)/.synced-pyc$(if $(GPU),-gpu,)
$(SYNCED): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra cluster $(if $(GPU),--extra gpu,) --python $(PYTHON) --quiet --compile-bytecode \
	  $(if $(wildcard $(VENV)/lib/python3.11/site-packages/pyspark_client-*.dist-info),--reinstall-package pyspark)
	@$(if $(GPU),touch $(VENV)/.gpu,rm -f $(VENV)/.gpu $(VENV)/.synced-pyc-gpu)
	@touch $@

setup: check-java $(SYNCED) ## Create the virtualenv from the lock (idempotent); GPU=1 adds JAX with CUDA for a GPU worker

run: setup ## Land the demo clickstream, run the nightly DAG for DS end to end (each task shown as it runs), print the summary
	$(PY) -m pipelines run --ds $(DS)

land-demo: setup ## Only land the demo clickstream (raw/events) ending at DS
	$(PY) -m pipelines land-demo --ds $(DS)

test: setup redis-server ## Run the suite (unit, property, spark and e2e tiers; gpu tests skip without a GPU)
	$(VENV)/bin/pytest $(XDIST) -m "not faults and not stack and not browser" $(PYTEST_ARGS)

test-faults: setup ## The fault suite: every writing stage killed mid-write, broken inputs, two runs at once
	$(VENV)/bin/pytest $(XDIST) -m faults $(PYTEST_ARGS)

test-fast: setup redis-server ## Run only the fast tier (no Spark, no DAG runs)
	$(VENV)/bin/pytest -m "not spark and not e2e and not gpu and not faults and not stack and not browser" $(PYTEST_ARGS)

# --- The production stack as local processes (pipelines/local/stack.py; docker/compose.yaml is the same) ---
redis-server: ## Install Debian's redis-server when missing (the stack's Celery broker)
	@command -v redis-server >/dev/null || test -x /usr/bin/redis-server || { \
	  if [ "$$(id -u)" != 0 ]; then echo "error: redis-server not found; install it (sudo apt-get install redis-server) and rerun" >&2; exit 1; fi; \
	  echo "installing redis-server (apt-get) ..."; \
	  apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }; }

chromium: ## Install Debian's chromium and chromium-driver when missing (the browser tier drives them)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "error: chromium not found; install it (sudo apt-get install chromium chromium-driver) and rerun" >&2; exit 1; fi; \
	  echo "installing chromium (apt-get) ..."; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }

serving-db-up: setup ## Start the embedded serving PostgreSQL (127.0.0.1:5434, database serving) that make run publishes to
	$(PY) -m pipelines.local.serving_db up

serving-db-down: setup ## Stop the embedded serving PostgreSQL (by its recorded pid)
	$(PY) -m pipelines.local.serving_db down

serving-psql: setup ## psql on the serving database (starts it when down): make serving-psql [SQL='select ...']
	$(PY) -m pipelines.local.serving_db psql $(if $(SQL),"$(SQL)",)

stack-up: setup redis-server ## Start PostgreSQL, Redis, Airflow (Celery), MLflow server and Spark cluster as local processes
	$(PY) -m pipelines.local.stack up

stack-status: setup ## Each stack service: state, pid, port and log
	@$(PY) -m pipelines.local.stack status

stack-down: setup ## Stop exactly the processes stack-up started (by their recorded pids)
	$(PY) -m pipelines.local.stack down

test-stack: setup redis-server chromium ## The stack and browser tiers: nightly, backfills, reruns, a killed worker, the UI
	$(VENV)/bin/pytest -m "stack or browser" $(PYTEST_ARGS)

lint: setup ## Lint with ruff (including Airflow's AIR rules)
	$(VENV)/bin/ruff check .

airflow-ui: setup ## Airflow standalone (UI at http://localhost:8080) serving this repository's DAGs
	eval "$$($(PY) -m pipelines env)" && $(PY) -m airflow db migrate >/dev/null && airflow standalone

mlflow-ui: setup ## MLflow UI (http://localhost:$(MLFLOW_PORT)) over the local tracking store
	$(VENV)/bin/mlflow ui --backend-store-uri "$$($(PY) -c 'from pipelines.config import load_config; print(load_config().tracking_uri)')" --port $(MLFLOW_PORT)

# --- Promotion control and the run report (pipelines/registry/, pipelines/reporting/) ---
REASON ?=
TO_VERSION ?=
ALLOW_ERASED ?=
.PHONY: rollback report

rollback: setup ## Move the champion back to the previous approved version: make rollback REASON='...' [TO_VERSION=N] [ALLOW_ERASED=1]
	@test -n "$(REASON)" || { echo "error: say why: make rollback REASON='stale recommendations since 2026-11-27'" >&2; exit 2; }
	$(PY) -m pipelines rollback --reason "$(REASON)" $(if $(TO_VERSION),--to-version $(TO_VERSION)) $(if $(ALLOW_ERASED),--allow-erased-training-data)

# --- Privacy: erasure and suppression requests (pipelines/privacy/, dags/privacy_erasure.py) ---
CUSTOMER ?=
KIND ?= erase
.PHONY: erase erasure-status

erase: setup ## Erase a customer everywhere now: make erase CUSTOMER=<id> REASON='...' [KIND=suppress] [NO_RUN=1]
	@test -n "$(CUSTOMER)" -a -n "$(REASON)" || { echo "usage: make erase CUSTOMER=<customer id> REASON='GDPR art. 17, ticket 4411' [KIND=suppress]" >&2; exit 2; }
	$(PY) -m pipelines erase --customer "$(CUSTOMER)" --reason "$(REASON)" --kind $(KIND) $(if $(NO_RUN),--no-run)

erasure-status: setup ## Every erasure request: status, counts removed per store, open and overdue ones
	$(PY) -m pipelines erasure-status

report: setup ## (Re)write the run report of DS (var/reports/run-DS.html and .md) from the lake and MLflow
	$(PY) -m pipelines report --ds $(DS)

# --- Bring your own clickstream, Spark cluster, feature benchmark ---------------------------------
MAPPING ?=
INPUT ?=
BENCH_ARGS ?=
.PHONY: import run-imported spark-cluster spark-cluster-stop bench-features bench-validation bench-erasure bench-scale bench-scoring bench-training bench-stack

import: setup ## Land an export in the raw zone by day: make import MAPPING=conf/mappings/rees46.yaml INPUT=events.csv
	@test -n "$(MAPPING)" -a -n "$(INPUT)" || { echo "usage: make import MAPPING=conf/mappings/<name>.yaml INPUT=<export file>" >&2; exit 2; }
	$(PY) -m pipelines.importers --mapping $(MAPPING) --input $(INPUT)

run-imported: setup ## Validate the imported days of DS's window and run the nightly DAG for DS (no demo landed)
	$(PY) -m pipelines run-imported --ds $(DS)

spark-cluster: setup ## Start a Spark standalone master + worker on 127.0.0.1:7077 (pids and logs in var/spark-cluster)
	$(PY) -m pipelines.local.spark_cluster start

spark-cluster-stop: ## Stop exactly the master and worker that make spark-cluster started
	$(PY) -m pipelines.local.spark_cluster stop

bench-features: setup ## Spark job vs DuckDB SQL on 1M and 10M events, full and as a scheduled night (BENCH_ARGS: --with-50m, --no-nightly, --hash-once-too)
	$(PY) -m benchmarks.features.run $(BENCH_ARGS)
bench-publish: setup ## The publish task on 1M recommendation rows into an embedded PostgreSQL: rows/s, rerun, vs row INSERTs
	$(PY) -m benchmarks.publishing.run $(BENCH_ARGS)
bench-erasure: setup ## Erase 100 customers from the lake make run left (a copy), against erasing one: seconds, rows per store
	$(PY) -m benchmarks.privacy.run $(BENCH_ARGS)
bench-validation: setup ## validate_raw_events without and with the raw contract, and in worker processes, on one 1M-event day (BENCH_ARGS: --events N, --workers N; --suite-engines: the suite on GX pandas vs Spark)
	$(PY) -m benchmarks.validation.run $(BENCH_ARGS)
bench-scale: setup ## Every nightly task on collector days of 100k, 1M and 10M events: seconds and peak GiB per stage (var/reports/bench-scale.json; BENCH_ARGS: --sizes, --days, --until STAGE)
	$(PY) -m benchmarks.scale.run $(BENCH_ARGS)
bench-training: setup ## train_candidate and evaluate_candidates on 100k and 1M users, the day held whole and streamed from Parquet: seconds and peak GiB (BENCH_ARGS: --users N.., --chunk-users N, --epochs N)
	$(PY) -m benchmarks.training.run $(BENCH_ARGS)
bench-scoring: setup ## Scoring's steps per batch at 50,000 items (model, top-k, affinity), each against the way before, projected to 500k users; then 20,000 users in one process and on Spark side by side (BENCH_ARGS: --users N, --items N, --engine-users N)
	$(PY) -m benchmarks.scoring.run $(BENCH_ARGS)
bench-stack: setup redis-server ## One night on the stack with the Celery workers' libraries preloaded, one without: seconds per task side by side (var/reports/bench-stack.json)
	$(PY) -m benchmarks.stack.run $(BENCH_ARGS)
# --- end of the clickstream/cluster/benchmark block ------------------------------------------------

clean: ## Remove var/ (lake, Airflow and MLflow state) and the local PostgreSQL data (stopped first); keeps the virtualenv
	@if [ -x $(PY) ]; then $(PY) -m pipelines.local.serving_db purge || true; $(PY) -m pipelines.local.stack purge || true; fi
	rm -rf var

# --- Paper reproduction and model benchmarks (benchmarks/models/) ---
DATASET ?= ../shared/datasets/amazon-games/sequences.txt
MODELS ?= popularity,sasrec,gru4rec,caser
REPRODUCE_BUDGET ?= sasrec=1200,gru4rec=780,caser=600
REPRODUCE_ARGS ?=
MODEL_BENCH_ARGS ?=

.PHONY: reproduce bench-models bench-gpu bench-h200

reproduce: setup ## Train popularity, Caser, GRU4Rec+, SASRec with paper settings on DATASET; table + var/reports/reproduce-<dataset>.json
	$(PY) -m benchmarks.models.reproduce --dataset $(DATASET) --models $(MODELS) --time-budget-seconds $(REPRODUCE_BUDGET) $(REPRODUCE_ARGS)

bench-models: setup ## Time one training epoch of each model on DATASET side by side (sequences/s)
	$(PY) -m benchmarks.models.bench_models --dataset $(DATASET) $(MODEL_BENCH_ARGS)

bench-gpu: setup ## bench-models on an NVIDIA GPU under KERAS_BACKEND=jax, bf16 (on the GPU host, after make setup GPU=1)
	@$(PY) -c "import jax; assert jax.devices('gpu')" 2>/dev/null || { \
	  echo "error: no JAX that sees a GPU in $(VENV): on the GPU host run make setup GPU=1, then rerun" >&2; exit 1; }
	KERAS_BACKEND=jax $(PY) -m benchmarks.models.bench_models --dataset $(DATASET) --mixed-precision $(MODEL_BENCH_ARGS)

bench-h200: setup ## The prepared GPU check (<= 10 min): epochs side by side, input-bound or not, SASRec to NDCG 0.536 (var/reports/bench-h200.json)
	KERAS_BACKEND=jax $(PY) -m benchmarks.models.h200 --dataset $(DATASET)
# --- end of the paper reproduction block ------------------------------------------------------
