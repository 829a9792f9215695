"""Where a Spark job's time goes, from its event log: start-up, then each named step (job description).

Per step: wall seconds (its SQL executions), executor run and CPU seconds summed over tasks, GC,
shuffle bytes written, bytes spilled, and (de)serialisation time. Start-up is the time from launching
``spark-submit`` to the first job. ``build_features`` names its steps with ``setJobDescription``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

METRICS = ("run", "cpu", "gc", "serde", "shuffle_mb", "spill_mb")
UNNAMED = "other (unnamed jobs)"


def read_event_log(log_dir: Path, launched_at: float) -> dict:
    """{"startup_seconds", "app_seconds", "steps": [{"step", "seconds", run, cpu, ...}]} of the one log in log_dir."""
    files = [p for p in Path(log_dir).rglob("*") if p.is_file() and not p.name.startswith(".")
             and not p.name.startswith("appstatus")]
    if len(files) != 1:
        raise ValueError(f"{log_dir}: expected one uncompressed Spark event log, found {[f.name for f in files]}")
    steps: dict[str, dict] = defaultdict(lambda: dict.fromkeys(("seconds", *METRICS), 0.0))
    order: list[str] = []  # steps in the order their first job started
    stage_step: dict[int, str] = {}
    sql_started: dict[int, tuple[int, str]] = {}
    app_start = app_end = first_job = None
    with files[0].open() as lines:
        for line in lines:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerApplicationStart":
                app_start = event["Timestamp"]
            elif kind == "SparkListenerApplicationEnd":
                app_end = event["Timestamp"]
            elif kind == "SparkListenerJobStart":
                step = (event.get("Properties") or {}).get("spark.job.description") or UNNAMED
                first_job = first_job or event["Submission Time"]
                order += [] if step in order else [step]
                stage_step.update(dict.fromkeys(event["Stage IDs"], step))
            elif kind == "SparkListenerTaskEnd":
                _add_task(steps[stage_step.get(event["Stage ID"], UNNAMED)], event)
            elif kind.endswith("SQLExecutionStart"):
                sql_started[event["executionId"]] = (event["time"], event.get("description") or "")
            elif kind.endswith("SQLExecutionEnd") and event["executionId"] in sql_started:
                start, description = sql_started.pop(event["executionId"])
                steps[description if description in order else UNNAMED]["seconds"] += (event["time"] - start) / 1000
    rows = [{"step": name, **{k: round(v, 1) for k, v in steps[name].items()}} for name in order]
    return {"startup_seconds": round(first_job / 1000 - launched_at, 1) if first_job else None,
            "app_seconds": round((app_end - app_start) / 1000, 1) if app_start and app_end else None,
            "steps": rows}


def _add_task(step: dict, event: dict) -> None:
    metrics = event.get("Task Metrics") or {}
    step["run"] += metrics.get("Executor Run Time", 0) / 1000
    step["cpu"] += metrics.get("Executor CPU Time", 0) / 1e9
    step["gc"] += metrics.get("JVM GC Time", 0) / 1000
    step["serde"] += (metrics.get("Executor Deserialize Time", 0) + metrics.get("Result Serialization Time", 0)) / 1000
    step["shuffle_mb"] += (metrics.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0) / 1e6
    step["spill_mb"] += metrics.get("Disk Bytes Spilled", 0) / 1e6


def format_breakdown(events: int, breakdown: dict) -> str:
    lines = [f"where Spark's time goes at {events:,} events (event log; start-up = launch to first job: "
             f"{breakdown['startup_seconds']} s, application {breakdown['app_seconds']} s)",
             f"  {'step':<44} {'wall s':>7} {'task s':>7} {'cpu s':>7} {'gc s':>5} {'serde s':>7} "
             f"{'shuffle MB':>10} {'spill MB':>8}"]
    for row in breakdown["steps"]:
        lines.append(f"  {row['step'][:44]:<44} {row['seconds']:>7.1f} {row['run']:>7.1f} {row['cpu']:>7.1f} "
                     f"{row['gc']:>5.1f} {row['serde']:>7.1f} {row['shuffle_mb']:>10.0f} {row['spill_mb']:>8.0f}")
    return "\n".join(lines)
