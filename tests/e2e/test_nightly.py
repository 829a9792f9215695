"""The nightly DAG end to end with ``dag.test()`` on a tiny generated clickstream (conf/test).

Real Airflow (SQLite metadata), real spark-submit through ``spark_default`` (``local[*]``), real
Keras training, a real SQLite-backed MLflow registry. One module-scoped run, then a rerun of the
same date that must change nothing, then a day with no data that must fail at validation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.config import REPO_ROOT, load_config
from pipelines.lake import partition_path

pytestmark = pytest.mark.e2e
DS = "2026-11-27"


@pytest.fixture(scope="module")
def nightly(serving_db):
    """Prepare Airflow and the demo like ``make run`` does; return (config, dag, run_dag)."""
    from pipelines.local.environment import pipeline_environment, prepare_airflow
    from pipelines.local.runner import land_demo, validate_earlier_days

    config = load_config()
    env = pipeline_environment(config)
    os.environ.update(env)
    prepare_airflow(config, env)
    land_demo(config, DS)
    validate_earlier_days(config, DS)

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO_ROOT / "dags")).get_dag("clickstream_nightly")

    def run_dag(ds: str):
        logical = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
        return dag.test(logical_date=logical)

    return config, run_dag


def _served(config, ds):
    """The serving database's rows of ``ds`` with their updated_at, as a reverse-ETL sync reads them."""
    from pipelines.publishing.connection import connect, target_from_env

    connection = connect(target_from_env(config.publishing.conn_id))
    schema = config.publishing.schema_name
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT customer_id, rank, item_id, score, model_version, updated_at "
                           f"FROM {schema}.recommendations WHERE ds = %s ORDER BY customer_id, rank", (ds,))
            recommendations = cursor.fetchall()
            cursor.execute(f"SELECT campaign, customer_id, rank, updated_at FROM {schema}.audiences "
                           f"WHERE ds = %s ORDER BY campaign, rank", (ds,))
            return recommendations, cursor.fetchall()
    finally:
        connection.close()


def _registry_state(config):
    from mlflow import MlflowClient

    from pipelines.registry.champion import current_champion
    from pipelines.registry.store import configure_mlflow

    experiment_id = configure_mlflow(config)
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{config.promotion.registered_model}'")
    runs = client.search_runs([experiment_id])
    champion = current_champion(config)
    return {"versions": sorted(v.version for v in versions), "runs": len(runs),
            "champion": champion.version if champion else None}


def _recommendations(config, ds):
    return pq.read_table(partition_path(config.layout.recommendations, ds)).sort_by([(C.USER_KEY, "ascending"),
                                                                                   (C.RANK, "ascending")])


def _audiences(config, ds):
    return pq.read_table(partition_path(config.layout.audiences, ds))


def test_first_run_produces_checked_data_models_champion_and_recommendations(nightly):
    config, run_dag = nightly
    dag_run = run_dag(DS)
    assert str(dag_run.state) == "success"
    checks = json.loads(config.layout.check_record(DS, lake.RAW_EVENTS_CHECK).read_text())
    assert checks["rows_in"] == checks["rows_accepted"] + checks["rows_quarantined"]
    evaluation = json.loads(config.layout.evaluation_record(DS).read_text())
    assert {c["model"] for c in evaluation["candidates"]} == set(config.training.models)
    state = _registry_state(config)
    assert state["champion"] is not None
    assert len(state["versions"]) == len(config.training.models)

    recs = _recommendations(config, DS)
    features = pq.read_table(partition_path(config.layout.features, DS) / lake.SEQUENCES)
    assert set(recs.column(C.USER_KEY).to_pylist()) == set(features.column(C.USER_KEY).to_pylist())
    assert max(recs.column(C.RANK).to_pylist()) == config.scoring.top_k
    bought = dict(zip(features.column(C.USER_KEY).to_pylist(), features.column(C.PURCHASED_ITEMS).to_pylist(),
                      strict=True))
    for user, item in zip(recs.column(C.USER_KEY).to_pylist(), recs.column(C.ITEM_IDX).to_pylist(), strict=True):
        assert item not in bought[user], "an item the user already bought was recommended"
    assert "user_id" not in recs.column_names and "email" not in features.column_names
    audiences = pq.read_table(partition_path(config.layout.audiences, DS))
    campaigns = set(pq.read_table(partition_path(config.layout.features, DS) / lake.CAMPAIGN_ITEMS)
                    .column(C.CAMPAIGN).to_pylist())
    assert campaigns and set(audiences.column(C.CAMPAIGN).to_pylist()) == campaigns  # the demo's ad campaigns
    assert audiences.num_rows == len(campaigns) * min(config.scoring.audience_size, features.num_rows)
    assert set(audiences.column(C.USER_KEY).to_pylist()) <= set(features.column(C.USER_KEY).to_pylist())
    served, served_audiences = _served(config, DS)
    publication = json.loads(config.layout.publication_record(DS).read_text())
    assert len(served) == publication["recommendations"]["published"] > 0
    assert publication["recommendations"]["anonymous"] > 0  # the demo's visitors without an account
    assert all(customer.startswith("U") for customer, *_ in served)  # customer ids, never anon- cookies
    assert {a[0] for a in served_audiences} == campaigns
    report = config.layout.run_report(DS, "html")
    page = report.read_text()
    assert "Promotion gate" in page and "Campaign audiences" in page
    assert report.with_suffix(".md").exists()


def test_rerun_of_the_same_date_changes_nothing(nightly):
    config, run_dag = nightly
    before_state, before_recs = _registry_state(config), _recommendations(config, DS)
    before_audiences, before_served = _audiences(config, DS), _served(config, DS)
    dag_run = run_dag(DS)
    assert str(dag_run.state) == "success"
    assert _registry_state(config) == before_state  # no new runs, versions or alias moves
    assert _recommendations(config, DS).equals(before_recs)
    assert _audiences(config, DS).equals(before_audiences)
    assert _served(config, DS) == before_served  # the same rows, and updated_at untouched: nothing to sync
    leftovers = [p for p in config.layout.lake_dir.rglob(".staging-*")]
    assert leftovers == []


def test_a_day_without_data_fails_at_validation_and_keeps_the_champion(nightly):
    config, run_dag = nightly
    champion_before = _registry_state(config)["champion"]
    dag_run = run_dag("2026-12-15")  # nothing landed for that day
    assert str(dag_run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["validate_raw_events"] == "failed"
    assert states["score_users"] != "success"
    assert _registry_state(config)["champion"] == champion_before


def _land_broken_copy(config, source_ds: str, ds: str) -> None:
    """The day after ``source_ds``: its events a day later, every other item event without its item id."""
    target = partition_path(config.layout.raw_events, ds)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(partition_path(config.layout.raw_events, source_ds).glob("*.jsonl")):
        lines = []
        for number, line in enumerate(path.read_text().splitlines()):
            try:
                event = json.loads(line)
                moved = dt.datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")) + dt.timedelta(days=1)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # the demo's collector noise: not needed here
            event["event_time"] = moved.isoformat()
            event["event_id"] = f"{event.get('event_id')}-next"
            if number % 2 == 0:
                event["item_id"] = None
            lines.append(json.dumps(event))
        (target / path.name).write_text("\n".join(lines) + "\n")


def test_a_day_where_half_the_item_ids_are_lost_stops_at_the_check_and_says_why(nightly, capsys, caplog):
    config, run_dag = nightly
    champion_before = _registry_state(config)["champion"]
    ds = "2026-11-28"
    _land_broken_copy(config, DS, ds)
    dag_run = run_dag(ds)
    assert str(dag_run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["validate_raw_events"] == "failed" and states["build_features"] == "upstream_failed"
    assert states["write_run_report"] == "success"
    assert _registry_state(config)["champion"] == champion_before
    record = json.loads(config.layout.check_record(ds, lake.RAW_EVENTS_CHECK).read_text())
    assert record["success"] is False and record["reasons"]["missing_item_id"] > record["rows_in"] // 4
    report = (config.layout.run_report(ds, "html")).read_text()
    assert "stopped at the raw_events data checks" in report and "missing_item_id" in report
    task_log = caplog.text + "".join(capsys.readouterr())
    assert "missing_item_id" in task_log and "above max_failure_rate" in task_log


def test_make_style_cli_reports_bad_ds():
    done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--ds", "27/11/2026"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "not a date; use YYYY-MM-DD" in done.stderr
