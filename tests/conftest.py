"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

from pipelines import lake
from pipelines.io import write_json_atomic
from tests.trained_registry import DS, gate_config, write_features

# The suite's own embedded deployment: a tiny config (conf/test) and every path, Airflow's SQLite
# metadata included, under one temporary folder. Set before anything imports Airflow, which reads
# AIRFLOW_HOME once at import.
TEST_ROOT = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
os.environ["PIPELINE_ENV"] = "test"
for _key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir"):
    _sub = {"var_dir": "", "lake_dir": "lake", "gx_dir": "gx", "mlflow_dir": "mlflow", "reports_dir": "reports"}[_key]
    os.environ[f"PIPELINE__PATHS__{_key.upper()}"] = str(TEST_ROOT / "var" / _sub)
os.environ["PIPELINE_USER_HASH_KEY"] = "test-only-hmac-key"
os.environ.pop("AIRFLOW_HOME", None)
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)


logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown chatter outlives pytest's log capture


# make test and make test-faults run on two pytest-xdist workers (--dist loadscope, TEST_WORKERS in the
# Makefile). A scope goes to one worker whole: each test module, so a module's fixtures are made once,
# and the registry and scoring packages together, which share the trained registry (a session
# fixture, a minute of CPU). Our own scheduler draws the scopes, not xdist_group marks: pytest 9.2's
# node ids no longer carry the marks' suffix (pytest-dev/pytest-xdist#1386). The slow tiers' modules
# go first, so neither worker is left with an end-to-end night once the other has run out of work.
SHARED_REGISTRY_PACKAGES = ("tests/registry/", "tests/scoring/")
SPREAD_MODULES = ("tests/faults/test_stages.py",)  # test by test: its module fixture is built once for all workers
_SLOW_FIRST = ("e2e", "faults", "spark")


def xdist_scope(nodeid: str) -> str:
    """The unit of work a worker takes whole: the test's module, the packages sharing the registry, or the
    test alone in a module whose fixture the workers share (``SPREAD_MODULES``)."""
    module = nodeid.split("::", 1)[0]
    if module in SPREAD_MODULES:
        return nodeid
    return next((package for package in SHARED_REGISTRY_PACKAGES if module.startswith(package)), module)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    config.option.loadscopereorder = False  # keep the collection's order: slow tiers first
    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # only an xdist worker's collection is scheduled
        return
    strays = sorted({item.nodeid.split("::")[0] for item in items if "registry" in item.fixturenames
                     and xdist_scope(item.nodeid) not in SHARED_REGISTRY_PACKAGES})
    if strays:
        raise pytest.UsageError(f"{strays} use the trained registry fixture outside {SHARED_REGISTRY_PACKAGES}: "
                                f"move them there, or add their package to SHARED_REGISTRY_PACKAGES (tests/conftest.py)")
    order = {}  # a scope's place: slow tiers first, then where its first test was collected
    for index, item in enumerate(items):
        order.setdefault(xdist_scope(item.nodeid), (not any(item.get_closest_marker(t) for t in _SLOW_FIRST), index))
    items.sort(key=lambda item: order[xdist_scope(item.nodeid)])


def _embedded_environment() -> None:
    from pipelines.config import load_config
    from pipelines.local.environment import pipeline_environment

    os.environ.update(pipeline_environment(load_config()))


_embedded_environment()


@pytest.fixture(scope="session")
def spark():
    """One small local Spark session for all ``spark``-marked tests (a JVM start costs seconds)."""
    from pyspark.sql import SparkSession

    from pipelines.config import load_config

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use the test's virtualenv
    session = (
        SparkSession.builder.master("local[2]")
        .config(map=load_config().spark.jvm_conf())  # conf/test: the JIT's first tier only
        .appName("pytest")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# The trained registry of the gate, rollback and scoring tests (trained once per session: a minute on CPU).
@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    from pipelines.training.candidates import train_candidate

    tmp = tmp_path_factory.mktemp("gate")
    weak_config, strong_config = gate_config(tmp, epochs=1), gate_config(tmp, epochs=12)
    write_features(weak_config.layout.features, DS)
    for check in lake.DATA_CHECKS:
        write_json_atomic(weak_config.layout.check_record(DS, check), {"success": True})
    weak = train_candidate(weak_config, DS, "gru4rec")
    strong = train_candidate(strong_config, DS, "gru4rec")
    return strong_config, weak, strong


@pytest.fixture
def fresh(registry):
    """No champion, no history: each test starts from an empty registry state (versions stay)."""
    from mlflow import MlflowClient

    from pipelines.registry.store import configure_mlflow

    config, weak, strong = registry
    configure_mlflow(config)  # a test may have pointed MLflow elsewhere
    client = MlflowClient()
    aliases = client.get_registered_model(config.promotion.registered_model).aliases
    for alias in (config.promotion.champion_alias, config.promotion.challenger_alias):
        if alias in aliases:
            client.delete_registered_model_alias(config.promotion.registered_model, alias)
    config.layout.champion_history.unlink(missing_ok=True)
    return registry


def free_port() -> int:
    from pipelines.local.stack import free_port as free

    return free()


@pytest.fixture(scope="session")
def serving_db():
    """A real PostgreSQL 15 for the session (the embedded serving database on a free port), stopped after.

    Sets the serving connection's variable, as ``make run`` does, and yields its ``ServingTarget``.
    """
    import shutil

    from pipelines.config import load_config
    from pipelines.local.serving_db import (
        PORT_ENV,
        connection_value,
        connection_variable,
        serving_stack,
        start,
        stop,
    )
    from pipelines.publishing.connection import target_from_env

    config = load_config()
    port = free_port()
    stack = serving_stack(config, {**os.environ, PORT_ENV: str(port)})
    start(stack)
    variable = connection_variable(config)
    os.environ[variable] = connection_value(config, port)
    try:
        yield target_from_env(config.publishing.conn_id)
    finally:
        os.environ.pop(variable, None)
        stop(stack)
        shutil.rmtree(stack.pg_data, ignore_errors=True)
