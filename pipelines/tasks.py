"""Entry points of the DAGs: one function per task, each ``(ds, overrides) -> small summary``.

Only ``dags/`` and the command line (``python -m pipelines``) import this module; no module of the
package does (``tests/test_layers.py`` fails if one does). Each function loads the layered config
with the run's overrides on top, calls the one stage function that does the day's work, and returns
a JSON-able summary for XCom: paths and counts, never data. Heavy libraries are imported inside the
functions so that parsing the DAG stays fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from functools import partial
from typing import Any

from pipelines.config import load_config

# The feature job is spark-submitted, not called: its arguments, with the run's overrides templated in.
FEATURE_JOB_ARGS = ["--ds", "{{ ds }}", "--overrides", "{{ params.overrides | tojson }}"]


@contextlib.contextmanager
def no_retry_on_bad_data() -> Iterator[None]:
    """In a DAG task: a failed data check fails the task without retries (the data would be the same)."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.validation.checks import DataCheckError

    try:
        yield
    except DataCheckError as err:
        raise AirflowFailException(str(err)) from err


def validate_raw_events(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.validation.raw_day import validate_raw_day

    return validate_raw_day(load_config(overrides), ds)


def validate_features(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.validation.features import validate_feature_partition

    return validate_feature_partition(load_config(overrides), ds)


def train_candidate(ds: str, model_name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train on ``training.device`` (its backend is chosen before anything imports Keras)."""
    from pipelines.training.device import use_device

    config = load_config(overrides)
    use_device(config.training.device, config.training.mixed_precision)
    from pipelines.training.candidates import train_candidate as train

    return train(config, ds, model_name)


def evaluate_candidates(ds: str, candidates: list[dict[str, Any]],
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.training.evaluation import evaluate_candidates as evaluate

    return evaluate(load_config(overrides), ds, candidates)


def promote_champion(ds: str, evaluation: dict[str, Any], overrides: dict[str, Any] | None = None,
                     control: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gate; ``control`` is the run's promotion_mode/promotion_reason and who triggered it."""
    from pipelines.registry.gate import promote_and_record, promotion_control

    return promote_and_record(load_config(overrides), ds, evaluation, promotion_control(**(control or {})))


def score_users(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The champion's lists and audiences; above ``scoring.spark_above_users`` on the ``spark.conn_id`` master."""
    from pipelines.scoring.recommendations import write_recommendations

    config = load_config(overrides)
    return write_recommendations(config, ds, spark_master=partial(spark_master, config.spark.conn_id))


def spark_master(conn_id: str) -> str:
    """The Spark master URL of the Airflow connection ``conn_id``, as spark-submit reads it (host, then :port)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise RuntimeError(
            f"the Airflow connection {conn_id!r} (spark.conn_id) is not defined, so there is no Spark master to "
            f"score on: add it in Admin > Connections (type spark, the master in 'host') or set "
            f"AIRFLOW_CONN_{conn_id.upper()}; make run sets it to local[*]") from None
    host = (connection.host or "").strip()
    if not host:
        raise RuntimeError(f"the Airflow connection {conn_id!r} has no host: put the Spark master there "
                           "(local[*], spark://host, yarn or k8s://...)")
    return f"{host}:{connection.port}" if connection.port else host


def publish_outputs(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The day's outputs by customer id into the serving database named by the Airflow connection."""
    from pipelines.publishing.publish import publish_outputs as publish

    config = load_config(overrides)
    return publish(config, ds, serving_target(config.publishing.conn_id) if config.publishing.enabled else None)


def serving_target(conn_id: str):
    """The serving database of the Airflow connection ``conn_id`` (UI, secrets backend or environment)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from pipelines.publishing.connection import ServingDatabaseError, target_from_fields

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ServingDatabaseError(
            f"the Airflow connection {conn_id!r} (publishing.conn_id) is not defined: add it in Admin > "
            f"Connections (type postgres, the database in 'schema') or set AIRFLOW_CONN_{conn_id.upper()}; "
            "make run starts an embedded PostgreSQL and sets it itself") from None
    return target_from_fields(conn_id, connection.host, connection.port, connection.login, connection.password,
                              connection.schema)


def write_run_report(ds: str, overrides: dict[str, Any] | None = None,
                     run_started: dt.datetime | None = None) -> dict[str, Any]:
    """The run report (HTML and Markdown under reports/, and in MLflow), whatever happened to the run."""
    from pipelines.reporting.report import write_run_report as write

    return write(load_config(overrides), ds, run_started=run_started)


def rollback_champion(reason: str, who: str | None = None, to_version: str | None = None,
                      run_id: str | None = None, overrides: dict[str, Any] | None = None,
                      allow_erased_training_data: bool = False) -> dict[str, Any]:
    """Move the champion back to the previous approved version (make rollback, the champion_rollback DAG)."""
    from pipelines.registry.champion import current_user
    from pipelines.registry.champion import rollback_champion as rollback

    return rollback(load_config(overrides), reason, who or current_user(), run_id=run_id,
                    to_version=str(to_version) if to_version else None,
                    allow_erased_training_data=allow_erased_training_data)


def accept_erasure_requests(requests: list[dict[str, Any]] | None = None, requested_by: str | None = None,
                            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Take in the dropped request files and the run's own requests (the DAG's param); ids never returned."""
    from pipelines.privacy.requests import accept_requests

    extra = [{**request, "requested_by": request.get("requested_by") or requested_by or "airflow"}
             for request in requests or []]
    return accept_requests(load_config(overrides), extra)


def erase_pending_requests(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Carry out every pending request in every store (the serving database of ``publishing.conn_id`` too)."""
    from pipelines.privacy.erasure import erase_pending, record_failure

    config = load_config(overrides)
    target = serving_target(config.publishing.conn_id) if config.publishing.enabled else None
    try:
        return erase_pending(config, target)
    except Exception as err:
        record_failure(config, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        raise


def apply_retention(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Delete raw days past ``privacy.raw_retention_days``; blank suppressed people's newly landed raw lines."""
    from pipelines.privacy.retention import apply_retention as retain
    from pipelines.privacy.retention import sweep_suppressed

    config = load_config(overrides)
    return {**retain(config, ds), "suppressed_lines_blanked": sweep_suppressed(config)}
