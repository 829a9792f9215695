"""``make bench-features``: the DuckDB baseline computes what the Spark job computes, and the time table reads the event log."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from benchmarks.features import duckdb_features, generate, run
from benchmarks.features.spark_breakdown import format_breakdown, read_event_log
from tests.features.frames import job_args, load_job

DS, KEY = "2026-11-27", "bench-test-key"


@pytest.mark.spark
def test_duckdb_baseline_and_spark_job_agree_on_generated_clickstream(spark, tmp_path, monkeypatch):
    generated = generate.generate(tmp_path / "validated", 20_000, days=3, end=DS)
    assert generated["events"] > 20_000  # the generator adds duplicate rows on top
    monkeypatch.setenv("PIPELINE_USER_HASH_KEY", KEY)
    common = [*job_args(tmp_path / "validated", window_days=3, shuffle_partitions=2), "--outputs", "core"]
    stats = load_job().main(["--ds", DS, "--features-root", str(tmp_path / "spark"), *common])
    counts = duckdb_features.build_core_features(tmp_path / "validated", tmp_path / "duckdb", DS, KEY.encode(),
                                                 window_days=3)
    assert counts["events_in"] == stats["events_in"] == generated["events"]
    assert stats["duplicates_dropped"] > 0 and stats["bot_sessions"] > 0  # both rules had work to do
    assert run.compare(tmp_path / "spark" / f"dt={DS}", tmp_path / "duckdb", stats, counts) == []
    vocab = pq.read_table(tmp_path / "duckdb" / "vocab.parquet")  # now make them disagree: one item less
    pq.write_table(vocab.slice(1), tmp_path / "duckdb" / "vocab.parquet")
    problems = run.compare(tmp_path / "spark" / f"dt={DS}", tmp_path / "duckdb", stats, counts)
    assert len(problems) == 1 and problems[0].startswith(f"item_vocab: {vocab.num_rows} rows (Spark) vs")


def _event(kind: str, **fields) -> str:
    return json.dumps({"Event": kind, **fields})


def test_breakdown_sums_task_metrics_per_named_step(tmp_path):
    log = tmp_path / "eventlog_v2_local-1" / "events_1_local-1"
    log.parent.mkdir()
    task = {"Executor Run Time": 1500, "Executor CPU Time": 1_000_000_000, "JVM GC Time": 100,
            "Executor Deserialize Time": 20, "Result Serialization Time": 5,
            "Shuffle Write Metrics": {"Shuffle Bytes Written": 2_000_000}, "Disk Bytes Spilled": 0}
    log.write_text("\n".join([
        _event("SparkListenerApplicationStart", Timestamp=10_000),
        _event("org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart", executionId=0, time=13_000,
               description="sessions"),
        _event("SparkListenerJobStart", **{"Job ID": 0, "Submission Time": 13_000, "Stage IDs": [0, 1],
                                           "Properties": {"spark.job.description": "sessions"}}),
        _event("SparkListenerTaskEnd", **{"Stage ID": 0, "Task Metrics": task}),
        _event("SparkListenerTaskEnd", **{"Stage ID": 1, "Task Metrics": task}),
        _event("org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd", executionId=0, time=16_500),
        _event("SparkListenerJobStart", **{"Job ID": 1, "Submission Time": 17_000, "Stage IDs": [2]}),
        _event("SparkListenerTaskEnd", **{"Stage ID": 2, "Task Metrics": task}),
        _event("SparkListenerApplicationEnd", Timestamp=18_000),
    ]) + "\n")
    breakdown = read_event_log(tmp_path, launched_at=9.0)
    assert breakdown["startup_seconds"] == 4.0 and breakdown["app_seconds"] == 8.0
    sessions, other = breakdown["steps"]
    assert (sessions["step"], sessions["seconds"], sessions["run"], sessions["cpu"]) == ("sessions", 3.5, 3.0, 2.0)
    assert (sessions["gc"], sessions["shuffle_mb"], sessions["serde"]) == (0.2, 4.0, 0.1)
    assert other["step"] == "other (unnamed jobs)" and other["run"] == 1.5
    assert "sessions" in format_breakdown(1_000, breakdown)
