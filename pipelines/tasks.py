"""Entry points of the nightly DAG: one function per task, each ``(ds, overrides) -> small summary``.

The DAG, the Makefile and the tests call these same functions. Each loads the layered config (with
the run's overrides on top), does its day's work through the modules that hold the logic, and
returns a JSON-able summary for XCom: paths and counts, never data. Heavy libraries are imported
inside the functions so that parsing the DAG stays fast.
"""

from __future__ import annotations

import datetime as dt
import logging
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
    ]


def day_interval(ds: str) -> tuple[dt.datetime, dt.datetime]:
    """The day a run processes: ``[ds 00:00 UTC, ds+1 00:00 UTC)``."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def check_record_path(config: PipelineConfig, ds: str, check: str):
    """Where a day's data-check result is recorded for the promotion gate and the summary."""
    return partition_path(config.layout.lake_dir / "checks", ds) / f"{check}.json"


def validate_raw_events(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.validation.raw_events import validate_raw_events as validate

    config = load_config(overrides)
    layout = config.layout
    start, end = day_interval(ds)
    result = validate(
        raw_partition=partition_path(layout.raw_events, ds), ds=ds, interval_start=start, interval_end=end,
        validated_partition=partition_path(layout.validated_events, ds),
        quarantine_partition=partition_path(layout.quarantine, ds),
        gx_project_dir=layout.gx_dir, max_failure_rate=config.validation.max_failure_rate)
    summary = result.to_dict()
    write_json_atomic(check_record_path(config, ds, "raw_events"), summary)
    log.info("raw events dt=%s: %s in = %s accepted + %s quarantined; data docs: %s", ds,
             result.rows_in, result.rows_accepted, result.rows_quarantined, result.data_docs_path)
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


def promote_champion(ds: str, evaluation: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.promotion import promote_champion as promote

    config = load_config(overrides)
    decision = promote(config, ds, evaluation)
    write_json_atomic(partition_path(config.layout.evaluations, ds) / "decision.json", decision)
    return decision


def score_users(ds: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from pipelines.scoring import write_recommendations

    return write_recommendations(load_config(overrides), ds)
