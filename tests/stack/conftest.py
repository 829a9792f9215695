"""One production stack for the stack and browser tiers: ``pipelines.local.stack`` on ports of its own.

The stack runs in a temporary ``var/`` with the suite's small config (``PIPELINE_ENV=test``) and
shorter training, on ports that leave a developer's own ``make stack-up`` alone. It is stopped (by
its recorded pids) when the session ends, also when a test failed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from pipelines.config import load_config

PORTS = {"POSTGRES": 5543, "REDIS": 6390, "AIRFLOW": 8180, "MLFLOW": 5100, "SPARK": 7177, "SPARK_UI": 8190,
         "SPARK_WORKER_UI": 8191, "WORKER_LOGS": 8893}
DAG = "clickstream_nightly"
TODAY = dt.datetime.now(dt.UTC).date()
LATEST = (TODAY - dt.timedelta(days=1)).isoformat()  # the scheduler's latest complete interval: yesterday


def days_before(day: str, n: int) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from pipelines.local.airflow_api import AirflowApi
    from pipelines.local.stack import ADMIN, build_stack, down, up

    var = tmp_path_factory.mktemp("stack") / "var"
    env = {f"PIPELINE__PATHS__{key.upper()}": str(var / sub) for key, sub in
           (("var_dir", ""), ("lake_dir", "lake"), ("gx_dir", "gx"), ("mlflow_dir", "mlflow"),
            ("reports_dir", "reports"))}
    env.update({f"PIPELINE_STACK_{name}_PORT": str(port) for name, port in PORTS.items()})
    env.update({"PIPELINE__TRAINING__EPOCHS": "2",  # epochs end training (the time budget is a safety stop)
                # a killed worker's task is found (and retried) after 30 s without a heartbeat, not 5 min
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30"})
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    config = load_config()
    running = build_stack(config)
    try:
        up(running)
        api = AirflowApi(running.airflow_url, ADMIN, running.admin_password())
        yield running, api, config
    finally:
        down(running)
        shutil.rmtree(running.pg_data, ignore_errors=True)  # outside the tmp var/ when run as root
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
