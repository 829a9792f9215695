"""``make run`` as a newcomer types it: ``python -m pipelines run`` in its own embedded deployment.

A separate Airflow home and lake (under tmp), so the run is what a fresh machine does: migrate the
metadata, land the demo, validate the earlier days with a counted progress line, run the DAG with
``airflow dags test`` printing each task as it starts and ends, then the summary.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import pytest

from pipelines import lake
from pipelines.config import REPO_ROOT, load_config
from pipelines.local.airflow_run import cli_json
from pipelines.local.environment import pipeline_environment

pytestmark = pytest.mark.e2e
DS = "2026-11-27"


def test_make_run_shows_each_task_and_ends_with_the_summary(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIPELINE__PATHS__"))}
    env.update({f"PIPELINE__PATHS__{key.upper()}": str(tmp_path / key)
                for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")})
    from tests.conftest import free_port

    env["PIPELINE_SERVING_DB_PORT"] = str(free_port())  # its own embedded serving database, started and stopped
    launched = dt.datetime.now(dt.UTC)
    try:
        done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--ds", DS], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:  # make run stopped its serving database; its data (outside tmp under root) go too
        subprocess.run([sys.executable, "-m", "pipelines.local.serving_db", "purge"], cwd=REPO_ROOT, env=env,
                       capture_output=True)
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    demo_days = 6  # conf/test: demo.days
    assert f"earlier days   {demo_days - 1}/{demo_days - 1}:" in out
    for task in ("validate_raw_events", "build_features", "validate_features", "train_candidate[0]",
                 "evaluate_candidates", "promote_champion", "score_users", "publish", "write_run_report"):
        assert re.search(rf"\] {re.escape(task)} +success +\d+\.\d s", out), task
    # Polled every 10 s: a two-minute run is seen with some task running (which ones depends on timing).
    assert len(re.findall(r"\] \S+ +running$", out, flags=re.M)) >= 2
    assert out.index("validate_raw_events") < out.index("build_features") < out.index("score_users")
    print(out)  # shown when the test fails: what a person sees
    summary = out[out.index(f"Nightly run for {DS}"):]
    assert "Gate: " in summary and "Recommendations: " in summary and "  build_features (success)" in summary
    assert re.search(r"Serving database .*recommendations_current", summary), summary
    assert re.search(rf"  {DS} U\d+: I\d+ I\d+", summary), summary  # what a marketer's query returns
    assert (tmp_path / "reports_dir" / f"run-{DS}.json").exists()
    assert (tmp_path / "lake_dir" / "outputs" / "recommendations" / f"dt={DS}" / lake.PART_FILE).exists()
    # The run records when it really ran (the UI's duration), not its logical date (apache/airflow#66127).
    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    airflow_env = pipeline_environment(load_config({"paths": paths}), env)
    runs = subprocess.run([sys.executable, "-m", "airflow", "dags", "list-runs", "clickstream_nightly", "-o", "json"],
                          env=airflow_env, capture_output=True, text=True)
    assert runs.returncode == 0, runs.stderr[-2000:]
    run = cli_json(runs.stdout)[0]
    started, ended = dt.datetime.fromisoformat(run["start_date"]), dt.datetime.fromisoformat(run["end_date"])
    assert launched <= started < ended <= dt.datetime.now(dt.UTC), run
    assert run["logical_date"].startswith(DS)
