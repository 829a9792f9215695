"""Every DAG imports cleanly, fast, without heavy libraries, with retries and tags set."""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.config import REPO_ROOT

HEAVY = ("tensorflow", "keras", "pyspark", "pandas", "mlflow", "great_expectations")

_PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "heavy": sorted(m for m in sys.argv[2].split(",") if m in sys.modules),
    "dags": {dag_id: {"tags": sorted(dag.tags),
                      "tasks": {t.task_id: {"retries": t.retries, "pool": t.pool, "queue": t.queue,
                                         "timeout": t.execution_timeout and t.execution_timeout.total_seconds()}
                                for t in dag.tasks}}
             for dag_id, dag in bag.dags.items()},
}))
"""


def _parse_dags() -> dict:
    done = subprocess.run([sys.executable, "-c", _PARSE, str(REPO_ROOT / "dags"), ",".join(HEAVY)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dags_import_without_errors_or_heavy_imports():
    parsed = _parse_dags()
    assert parsed["errors"] == {}
    assert parsed["heavy"] == [], f"imported at parse time: {parsed['heavy']}"
    assert "clickstream_nightly" in parsed["dags"]


def test_nightly_dag_wiring():
    dag = _parse_dags()["dags"]["clickstream_nightly"]
    assert dag["tags"]
    assert set(dag["tasks"]) == {"validate_raw_events", "build_features", "validate_features", "train_candidate",
                                 "evaluate_candidates", "promote_champion", "score_users", "publish",
                                 "write_run_report"}
    assert all(task["retries"] >= 1 for task in dag["tasks"].values())
    assert dag["tasks"]["train_candidate"]["pool"] == "gpu"
    assert dag["tasks"]["train_candidate"]["queue"] == "gpu"  # the GPU Celery worker's queue
    assert {task["queue"] for name, task in dag["tasks"].items() if name != "train_candidate"} == {"default"}


def test_every_task_has_the_execution_timeout_of_the_config():
    from pipelines.config import load_config

    airflow = load_config().airflow
    for dag in _parse_dags()["dags"].values():
        for task_id, task in dag["tasks"].items():
            assert task["timeout"] == airflow.execution_timeout(task_id).total_seconds(), task_id
    assert airflow.execution_timeout("train_candidate") > airflow.execution_timeout("default")


def test_the_trigger_form_validates_with_its_defaults_and_a_reason_is_optional():
    """The UI's Trigger and Backfill buttons stay disabled while a param fails its schema with its default."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict

    dag = DagBag(str(REPO_ROOT / "dags")).dags["clickstream_nightly"]
    params = ParamsDict(dag.params)
    params.validate()  # raises ParamValidationError on a default that fails its own schema
    assert params["promotion_reason"] is None
    # The form marks a field required unless its schema allows null (an empty "" string counts as missing).
    assert "null" in dag.params.get_param("promotion_reason").schema["type"]
    assert ParamsDict({**dag.params, "promotion_reason": "campaign freeze"}).validate()["promotion_reason"]


def test_rollback_dag_is_one_task():
    dag = _parse_dags()["dags"]["champion_rollback"]
    assert set(dag["tasks"]) == {"rollback_champion"} and dag["tags"]


def test_the_feature_job_gets_the_runs_overrides():
    """The run's ``overrides`` param reaches spark-submit (templated), not the config the DAG was parsed with."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO_ROOT / "dags")).dags["clickstream_nightly"]  # parsed, as the dag-processor does
    task = dag.get_task("build_features")
    overrides = {"features": {"max_seq_len": 7, "sequence_event_types": ["purchase"]}, "note": "it's <fine>"}
    rendered = task.render_template(task.application_args, {"ds": "2026-11-27", "params": {"overrides": overrides}},
                                    jinja_env=dag.get_template_env())
    assert rendered[:2] == ["--ds", "2026-11-27"]
    assert json.loads(rendered[rendered.index("--overrides") + 1]) == overrides


def test_the_feature_job_gets_the_configs_jvm_options_for_driver_and_executors():
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.config import load_config

    spark = load_config().spark
    assert spark.java_options == "-XX:TieredStopAtLevel=1"  # conf/test
    conf = DagBag(str(REPO_ROOT / "dags")).dags["clickstream_nightly"].get_task("build_features").conf
    assert conf["spark.driver.extraJavaOptions"] == conf["spark.executor.extraJavaOptions"] == spark.java_options
    assert load_config({"spark": {"java_options": " "}}).spark.jvm_conf() == {}  # base: none


def test_privacy_dag_shares_the_lake_writers_pool_with_the_nightly_writers():
    from pipelines.config import load_config

    pool = load_config().privacy.lake_pool
    dags = _parse_dags()["dags"]
    privacy, nightly = dags["privacy_erasure"]["tasks"], dags["clickstream_nightly"]["tasks"]
    assert set(privacy) == {"accept_requests", "erase_pending", "apply_retention"}
    assert privacy["erase_pending"]["pool"] == privacy["apply_retention"]["pool"] == pool
    writers = ("validate_raw_events", "build_features", "score_users", "publish")
    assert all(nightly[name]["pool"] == pool for name in writers)  # an erasure never rewrites a day mid-write


def test_the_privacy_form_validates_with_its_defaults_and_refuses_a_request_without_a_customer():
    import pytest
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = DagBag(str(REPO_ROOT / "dags")).dags["privacy_erasure"]
    assert ParamsDict(dag.params).validate()["requests"] == []
    params = ParamsDict(dag.params)
    params["requests"] = [{"customer_id": "U000123", "kind": "erase", "reason": "ticket 4411"}]
    assert params.validate()["requests"][0]["customer_id"] == "U000123"
    with pytest.raises(ParamValidationError, match="customer_id"):  # the form refuses it as it is typed
        params["requests"] = [{"kind": "erase"}]
