"""The nightly feature job: validated events -> clean events of the day, then the window's features.

Incremental: the day that landed (``ds``) is cleaned once (late events, replays, duplicates, bots,
pseudonymised users, sessions; see ``cleaning``) and kept as ``events/``; the earlier days of the
trailing window are read from their own nights' ``events/`` (recomputed only when missing or written
with other settings). From the window's clean, non-bot events it writes ``features/dt=<ds>/`` whole
through a staging folder and one rename (the tables are ``pipelines.lake.FEATURE_TABLES``), with
``_stats.json``: counts that reconcile and the config the job ran with. A rerun of the same ds
replaces the folder with identical content. ``outputs="core"`` writes only events, vocabulary,
sequences and popularity (what the benchmark compares with DuckDB).

``run`` takes the Spark session and the layered config; ``spark_jobs/build_features.py`` builds both.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.dates import window_bounds
from pipelines.features import clean_events, vocab, window_outputs
from pipelines.features.cleaning import IS_BOT, LANDED_DT
from pipelines.features.store import count_rows
from pipelines.io import partition_lock, publish_partition, staging_path_for, write_json_atomic
from pipelines.lake import partition_path, read_record

VOLUME_ALERT_FACTOR = 10  # a day with this many times the window's median volume is flagged in the stats
OUTPUTS = ("all", "core")


class FeatureJobError(SystemExit):
    """The job cannot run on this input (no key, no validated day, bad settings); the message says why."""


@dataclass(frozen=True)
class JobRun:
    """One night of the job: the day, its settings and where it reads and writes."""

    ds: str
    config: PipelineConfig
    validated_root: Path
    features_root: Path
    outputs: str = "all"

    @property
    def window_days(self) -> int:
        return self.config.features.window_days


def plan_run(config: PipelineConfig, ds: str, outputs: str = "all", validated_root: Path | None = None,
             features_root: Path | None = None) -> JobRun:
    """The run's inputs and outputs: the config's lake unless a root is given (benchmarks, tests)."""
    if outputs not in OUTPUTS:
        raise FeatureJobError(f"build_features: outputs={outputs!r}; use one of {list(OUTPUTS)}")
    layout = config.layout
    return JobRun(ds=ds, config=config, validated_root=Path(validated_root or layout.validated_events),
                  features_root=Path(features_root or layout.features), outputs=outputs)


def hash_key(env_name: str, env: dict[str, str] | None = None) -> bytes:
    key = (os.environ if env is None else env).get(env_name, "")
    if not key:
        raise FeatureJobError(
            f"build_features: environment variable {env_name} is not set or empty; it must hold the secret "
            f"key that pseudonymizes user ids. Set it (from the secrets backend, never a committed file) "
            f"or name another variable in features.hash_key_env.")
    return key.encode("utf-8")


def check_today(job: JobRun) -> None:
    today = partition_path(job.validated_root, job.ds)
    if not fs.is_dir(today):
        raise FeatureJobError(
            f"build_features: {today} does not exist: there are no validated events for ds={job.ds}. "
            f"Run the validation task for {job.ds} first, then rerun this job.")


def run(spark: SparkSession, job: JobRun, key: bytes) -> dict[str, Any]:
    """Build and publish ``features/dt=<ds>`` atomically; returns the stats written to ``_stats.json``."""
    check_today(job)
    target = partition_path(job.features_root, job.ds)
    with partition_lock(target):  # one run of a day at a time; recovers what a killed run left
        staging = staging_path_for(target)
        try:
            stats = _build(spark, job, key, staging)
            write_json_atomic(staging / lake.FEATURE_STATS, stats)
            publish_partition(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return stats


def clean_params(config: PipelineConfig) -> clean_events.CleanParams:
    features = config.features
    return clean_events.CleanParams(
        late_event_days=config.validation.late_event_days, session_gap_minutes=features.session_gap_minutes,
        user_buckets=features.user_buckets, bot_max_events_per_minute=features.bot_max_events_per_minute,
        bot_min_events=features.bot_min_events)


def job_settings(job: JobRun) -> dict[str, Any]:
    """The config the job ran with, as recorded in ``_stats.json`` (the features section and the lateness)."""
    return {**job.config.features.model_dump(exclude={"hash_key_env"}),
            "late_event_days": job.config.validation.late_event_days, "outputs": job.outputs}


def _write(df: DataFrame, path: Path) -> None:
    # One small file per output; repartition (not coalesce) keeps the upstream stages parallel.
    with clean_events.described(df.sparkSession, f"write {path.name}"):
        df.repartition(1).write.mode("errorifexists").parquet(str(path))


# The stats' counts of what was written are read back from the written files, on the driver: a row
# count is in the Parquet footers (``store.count_rows``), and the rest is one small column of a small
# table. A Spark action of its own costs one job or more (a pass over the cached window for its
# totals), and an Observation on a write waits for Spark's listener bus after it; these reads cost
# neither (README, "Sizing").
def _column(folder: Path, name: str):
    return fs.read_parquet(folder, columns=[name]).column(name)


def _totals_from_tables(staging: Path) -> dict[str, int]:
    """``window_outputs.window_totals`` from the ``all`` tables just written: a user_rfm row per user,
    with its events in the window, and a sessions_summary row per start day, with its sessions."""
    events_per_user = _column(staging / lake.USER_RFM, C.N_EVENTS)
    return {"events_in_window": int(pc.sum(events_per_user).as_py() or 0),
            "sessions": int(pc.sum(_column(staging / lake.SESSIONS_SUMMARY, "sessions")).as_py() or 0),
            "users": len(events_per_user)}


def _window_events(spark: SparkSession, job: JobRun, key: bytes, staging: Path, stats: dict):
    """Clean the days that need it, store today's; the window's clean non-bot events and what to unpersist."""
    params = clean_params(job.config)
    stats["clean_signature"] = signature = params.signature(key)
    compute, reuse = clean_events.plan_days(job.validated_root, job.features_root, job.ds, job.window_days,
                                            signature)
    raw = clean_events.read_validated(spark, compute)
    earlier = clean_events.earlier_event_ids(spark, job.validated_root, compute, params.late_event_days)
    batch = clean_events.clean_batch(raw, earlier, key, params, job.config.features.hash_users_once_up_to)
    today = batch.events.filter(F.col(LANDED_DT) == job.ds)
    # Sorted by user, landed day, time and id: a rerun writes the same rows in the same order.
    with clean_events.described(spark, f"write {lake.CLEAN_EVENTS} of {job.ds}"):
        today.sortWithinPartitions(C.USER_KEY, LANDED_DT, C.EVENT_TIME, C.EVENT_ID).write.parquet(
            str(staging / lake.CLEAN_EVENTS))
    stored = clean_events.read_clean_events(spark, reuse)
    events = batch.events if stored is None else batch.events.unionByName(stored)
    start, _ = window_bounds(job.ds, job.window_days)
    window = events.filter(~F.col(IS_BOT) & (F.col(C.EVENT_TIME) >= F.to_timestamp(F.lit(start))))
    if stored is not None:  # else it derives cheaply from the batch's cached sessions: no second cache
        window = window.persist()
    stats.update(batch.counts)
    stats.update({"partitions_read": [p.name for p in compute], "clean_events_reused": sorted(reuse)})
    return window, [window, *batch.cached]


def volume(job: JobRun, events_today: int) -> dict[str, Any]:
    """Today's landed volume against the median of the window's other days (from validation's counts)."""
    others = [read_record(folder / lake.COUNTS_FILE).get("rows_accepted", 0)
              for folder in lake.window_partitions(job.validated_root, job.ds, job.window_days)
              if lake.day_of(folder) != job.ds and fs.exists(folder / lake.COUNTS_FILE)]
    median = statistics.median(others) if others else None
    ratio = round(events_today / median, 2) if median else None
    alert = ratio is not None and ratio >= VOLUME_ALERT_FACTOR
    if alert:
        print(f"build_features: WARNING dt={job.ds} has {ratio}x the median daily volume ({median}); "
              f"check the collector for replays or a bot before trusting tonight's features")
    return {"events_landed_today": events_today, "median_daily_events": median, "volume_ratio": ratio,
            "volume_alert": alert}


def _build(spark: SparkSession, job: JobRun, key: bytes, staging: Path) -> dict[str, Any]:
    stats: dict = {}
    events, cached = _window_events(spark, job, key, staging, stats)
    previous_dir = lake.latest_partition_before(job.features_root, job.ds, lake.ITEM_VOCAB)
    previous = spark.read.parquet(str(previous_dir / lake.ITEM_VOCAB)) if previous_dir else None
    try:
        _write(vocab.update_item_vocab(previous, events, job.ds).orderBy(C.ITEM_IDX), staging / lake.ITEM_VOCAB)
        item_vocab = spark.read.parquet(str(staging / lake.ITEM_VOCAB))
        outputs = window_outputs.build_outputs(events, item_vocab, job.config.features, job.ds, job.outputs)
        for name, frame in outputs.items():
            _write(frame, staging / name)
        if job.outputs == "all":  # the marketer's tables hold the window's totals
            totals = _totals_from_tables(staging)
        else:
            with clean_events.described(spark, "count events, sessions and users"):
                totals = window_outputs.window_totals(events)
    finally:
        for frame in cached:
            frame.unpersist()
    categories = _column(staging / lake.ITEM_VOCAB, C.CATEGORY)  # a row per item
    items = len(categories)
    start, end = window_bounds(job.ds, job.window_days)
    events_today = count_rows(staging / lake.CLEAN_EVENTS, job.ds)
    previous_items = count_rows(previous_dir / lake.ITEM_VOCAB, lake.day_of(previous_dir)) if previous_dir else 0
    return {
        "ds": job.ds, "window_start": start, "window_end": end, "window_days": job.window_days, **stats,
        **totals, **volume(job, events_today),
        "previous_vocab": previous_dir.name if previous_dir else None,
        "users_with_sequences": count_rows(staging / lake.SEQUENCES, job.ds),
        "items": items,
        "new_items": items - previous_items,
        "items_without_category": categories.null_count,
        "vocab_version": job.ds,
        "outputs": sorted([lake.FEATURE_STATS, lake.CLEAN_EVENTS, lake.ITEM_VOCAB, *outputs]),
        "personal_data_columns_dropped": list(C.PERSONAL_DATA_COLUMNS),
        "user_id_replaced_by": [C.USER_KEY, C.USER_BUCKET],
        "params": job_settings(job),
    }
