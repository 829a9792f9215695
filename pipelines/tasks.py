"""Entry points of the nightly DAG: one function per task, each ``(ds, overrides) -> small summary``.

The DAG, the Makefile and the tests call these same functions. Each loads the layered config (with
the run's overrides on top), does its day's work through the modules that hold the logic, and
returns a JSON-able summary for XCom: paths and counts, never data. Heavy libraries are imported
inside the functions so that parsing the DAG stays fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from pipelines.config import PipelineConfig, load_config
from pipelines.io import partition_path, write_json_atomic

log = logging.getLogger(__name__)


def feature_job_args(config: PipelineConfig) -> list[str]:
    """Arguments of ``spark_jobs/build_features.py`` (all but ``--ds``) from the config."""
    features = config.features
    return [
        "--validated-root", str(config.layout.validated_events),
        "--features-root", str(config.layout.features),
        "--window-days", str(features.window_days),
        "--session-gap-minutes", str(features.session_gap_minutes),
        "--max-seq-len", str(features.max_seq_len),
        "--min-seq-len", str(features.min_seq_len),
        "--user-buckets", str(features.user_buckets),
        "--sequence-event-types", ",".join(features.sequence_event_types),
        "--hash-key-env", features.hash_key_env,
        "--shuffle-partitions", str(features.shuffle_partitions),
        "--late-event-days", str(config.validation.late_event_days),
        "--bot-max-events-per-minute", str(features.bot_max_events_per_minute),
        "--bot-min-events", str(features.bot_min_events),
        "--popularity-windows", ",".join(str(days) for days in features.popularity_windows),
        "--favourite-categories", str(features.favourite_categories),
    ]


@contextlib.contextmanager
def no_retry_on_bad_data() -> Iterator[None]:
    """In a DAG task: a failed data check fails the task without retries (the data would be the same)."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.validation.checks import DataCheckError

    try:
        yield
    except DataCheckError as err:
        raise AirflowFailException(str(err)) from err


def day_interval(ds: str) -> tuple[dt.datetime, dt.datetime]:
    """The day a run processes: ``[ds 00:00 UTC, ds+1 00:00 UTC)``."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def check_record_path(config: PipelineConfig, ds: str, check: str):
    """Where a day's data-check result is recorded for the promotion gate and the summary."""
    return partition_path(config.layout.lake_dir / "checks", ds) / f"{check}.json"


def validate_raw_events(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Row checks with quarantine, then drift against the trailing days; the record is written either way."""
    from pipelines.validation.checks import DataCheckError
    from pipelines.validation.drift import check_raw_drift
    from pipelines.validation.raw_events import RawDataError
    from pipelines.validation.raw_events import validate_raw_events as validate

    config = load_config(overrides)
    layout = config.layout
    start, end = day_interval(ds)
    start -= dt.timedelta(days=config.validation.late_event_days)  # late events: see pipelines/features/cleaning.py
    try:
        result = validate(
            raw_partition=partition_path(layout.raw_events, ds), ds=ds, interval_start=start, interval_end=end,
            validated_partition=partition_path(layout.validated_events, ds),
            quarantine_partition=partition_path(layout.quarantine, ds),
            gx_project_dir=layout.gx_dir, max_failure_rate=config.validation.max_failure_rate)
    except RawDataError as err:
        counts = err.result.to_dict() if err.result else {"ds": ds}
        write_json_atomic(check_record_path(config, ds, "raw_events"),
                          {**counts, "success": False, "failures": [str(err)], "warnings": []})
        if err.result is not None:  # the day was read and judged: rerunning the task would not change it
            raise DataCheckError(str(err)) from err
        raise
    drift = check_raw_drift(config, ds)
    summary = {**result.to_dict(), "success": result.success and drift["success"], "drift": drift,
               "failures": drift["failures"], "warnings": drift["warnings"]}
    write_json_atomic(check_record_path(config, ds, "raw_events"), summary)
    log.info("raw events dt=%s: %s in = %s accepted + %s quarantined; data docs: %s", ds,
             result.rows_in, result.rows_accepted, result.rows_quarantined, result.data_docs_path)
    for warning in drift["warnings"]:
        log.warning("raw events dt=%s: %s", ds, warning)
    if drift["data_docs"]:
        log.info("raw events dt=%s: drift checks data docs: %s", ds, drift["data_docs"])
    if not drift["success"]:
        raise DataCheckError(
            f"{partition_path(layout.validated_events, ds)}: {len(drift['failures'])} drift check(s) of severity "
            f"fail: {'; '.join(drift['failures'])}. Training is stopped. Bands come from the trailing "
            f"{drift['history_days']} days; see the data docs at {', '.join(drift['data_docs'].values())}. Fix or "
            f"re-land the day and rerun, or set checks.severity.<check>: warn if this is expected")
    return summary


def validate_features(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.validation.features import validate_feature_partition

    config = load_config(overrides)
    return validate_feature_partition(config, ds)


def train_candidate(ds: str, model_name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.candidates import train_candidate as train

    return train(load_config(overrides), ds, model_name)


def evaluate_candidates(ds: str, candidates: list[dict[str, Any]],
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.candidates import evaluate_candidates as evaluate

    return evaluate(load_config(overrides), ds, candidates)


def promote_champion(ds: str, evaluation: dict[str, Any], overrides: dict[str, Any] | None = None,
                     control: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gate; ``control`` is the run's promotion_mode/promotion_reason and who triggered it."""
    from pipelines.promotion import promote_champion as promote
    from pipelines.promotion import promotion_control

    config = load_config(overrides)
    decision = promote(config, ds, evaluation, promotion_control(**(control or {})))
    write_json_atomic(partition_path(config.layout.evaluations, ds) / "decision.json", decision)
    return decision


def rollback_champion(reason: str, who: str | None = None, to_version: str | None = None,
                      run_id: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move the champion back to the previous approved version (make rollback, the champion_rollback DAG)."""
    from pipelines.registry import current_user
    from pipelines.registry import rollback_champion as rollback

    return rollback(load_config(overrides), reason, who or current_user(), run_id=run_id,
                    to_version=str(to_version) if to_version else None)


def write_run_report(ds: str, overrides: dict[str, Any] | None = None,
                     run_started: dt.datetime | None = None) -> dict[str, Any]:
    """The run report (HTML and Markdown under reports/, and in MLflow), whatever happened to the run."""
    from pipelines.report import write_run_report as write

    return write(load_config(overrides), ds, run_started=run_started)


def score_users(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.scoring import write_recommendations

    return write_recommendations(load_config(overrides), ds)
