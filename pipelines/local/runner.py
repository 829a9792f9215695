"""One local runner for ``make run`` (the demo) and ``make run-imported`` (an export already imported).

Both do the same, on one machine with the embedded services: prepare Airflow's metadata, validate
the raw days of ``ds``'s feature window that no earlier night validated (the earlier nights of a real
deployment, or its backfills, did that; one rule decides, ``validation.raw_day.already_validated``),
run the DAG for ``ds`` with ``airflow dags test`` showing each task's progress, and print the run
summary. ``make run`` first lands the demo clickstream ending at ``ds``; ``make run-imported`` never
does, and refuses a ``ds`` that has no raw data.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any, TextIO

from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.local.airflow_run import run_dag_test, timed
from pipelines.local.environment import check_java, pipeline_environment, prepare_airflow
from pipelines.local.serving_db import embedded_serving_db
from pipelines.reporting.record import collect_run_record, write_run_record
from pipelines.reporting.report import write_run_report
from pipelines.reporting.summary import format_run_summary
from pipelines.validation.checks import DataCheckError
from pipelines.validation.raw_day import already_validated, validate_raw_day
from pipelines.validation.raw_events import RawDataError

PRIVACY_DAG_ID = "privacy_erasure"


def land_demo(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """The demo clickstream's ``demo.days`` raw days ending at ``ds`` (deterministic: a rerun rewrites the same)."""
    from pipelines.demo import generate_demo_clickstream
    from pipelines.privacy.retention import sweep_suppressed

    demo = config.demo
    landed = generate_demo_clickstream(config.layout.raw_events, end_date=dt.date.fromisoformat(ds),
                                       days=demo.days, n_users=demo.n_users, n_items=demo.n_items,
                                       events_per_day=demo.events_per_day, seed=demo.seed,
                                       collector_noise_rate=demo.collector_noise_rate,
                                       catalog_root=config.layout.catalog)
    # Like a collector with a suppression list: erased or suppressed people's events are not landed again.
    sweep_suppressed(config, sorted(lake.day_folders(config.layout.raw_events)))
    return landed


def earlier_days(config: PipelineConfig, ds: str) -> list[str]:
    """The landed raw days of ``ds``'s trailing feature window before ``ds``, oldest first."""
    folders = lake.window_partitions(config.layout.raw_events, ds, config.features.window_days)
    return [lake.day_of(folder) for folder in folders if lake.day_of(folder) < ds]


def validate_earlier_days(config: PipelineConfig, ds: str, out: TextIO = sys.stdout) -> dict[str, str]:
    """Validate the window's earlier days that need it, with the stage's own function; day -> outcome.

    A refused day is reported and skipped, as that night's run would have stopped: the feature job
    reads only the days that were validated.
    """
    days, outcomes = earlier_days(config, ds), {}
    for number, day in enumerate(days, 1):
        if already_validated(config, day):
            outcomes[day] = "validated before"
        else:
            try:
                record = validate_raw_day(config, day)
                outcomes[day] = f"{record['rows_accepted']} accepted, {record['rows_quarantined']} quarantined"
            except (RawDataError, DataCheckError) as err:
                outcomes[day] = f"refused: {err}"
        print(f"  earlier days {number:>3}/{len(days)}: {day} {outcomes[day][:160]}", file=out, flush=True)
    return outcomes


def run_nightly(config: PipelineConfig, ds: str, *, demo: bool, out: TextIO = sys.stdout) -> int:
    """Land the demo (``demo``) or check the import, validate the window, run the DAG, print the summary.

    Returns 0 when the run went through to a gate decision, 1 when it failed, 2 when it cannot start.
    """
    if not demo and not lake.partition_path(config.layout.raw_events, ds).is_dir():
        print(f"error: {lake.partition_path(config.layout.raw_events, ds)} does not exist: import the export "
              f"first (make import MAPPING=... INPUT=...) and pick a DS that has data", file=sys.stderr)
        return 2
    check_java()
    env = pipeline_environment(config)
    if ds < config.airflow.start_date.isoformat():  # exports are often older than the DAG's start_date,
        env["PIPELINE__AIRFLOW__START_DATE"] = ds  # before which Airflow would run no task at all
    stages: dict[str, float] = {}
    with timed(stages, "airflow metadata (db migrate)"):
        prepare_airflow(config, env)
    if demo:
        with timed(stages, "land demo clickstream"):
            land_demo(config, ds)
    print(f"validating the earlier raw days of the {config.features.window_days}-day window ...", file=out, flush=True)
    with timed(stages, "validate earlier days"):
        validate_earlier_days(config, ds, out)
    with embedded_serving_db(config, env) as serving:  # started for this run unless one is configured
        env.update(serving)
        returncode, log_file = run_dag_test(config, env, ds, stages, out)
        served = _served_sample(config, env)
    code = report_run(config, ds, stages, returncode, log_file, out)
    if served:
        print(served, file=out)
    return code


def run_privacy(config: PipelineConfig, ds: str, out: TextIO = sys.stdout) -> int:
    """The ``privacy_erasure`` DAG for ``ds`` through ``airflow dags test`` (make erase), then the audit."""
    from pipelines.privacy.status import erasure_status, format_status

    env = pipeline_environment(config)
    stages: dict[str, float] = {}
    prepare_airflow(config, env)
    with embedded_serving_db(config, env) as serving:
        env.update(serving)
        returncode, log_file = run_dag_test(config, env, ds, stages, out, dag_id=PRIVACY_DAG_ID)
    print(format_status(erasure_status(config)), file=out)
    if returncode:
        print(f"the privacy_erasure run failed (exit status {returncode}); its requests stay pending and the next "
              f"run finishes them; task logs: {log_file}", file=out)
    return 1 if returncode else 0


def _served_sample(config: PipelineConfig, env: dict[str, str]) -> str:
    """What a marketer's query of the serving database now returns (a few customers), for the summary."""
    from pipelines.publishing.connection import ServingDatabaseError, connect, target_from_env
    from pipelines.publishing.store import read_current

    if not config.publishing.enabled:
        return ""
    try:
        target = target_from_env(config.publishing.conn_id, env)
        connection = connect(target)
    except ServingDatabaseError as err:
        return f"Serving database: {err}"
    try:
        rows = read_current(connection, config.publishing.schema_name)
    except Exception as err:  # noqa: BLE001 - a summary line, not the run's outcome
        return f"Serving database {target.describe()}: not readable ({str(err).splitlines()[0]})"
    finally:
        connection.close()
    lines = [f"Serving database {target.describe()}, {config.publishing.schema_name}.recommendations_current "
             f"(make serving-psql to query it):"]
    lines += [f"  {ds} {customer}: {items} (model {version})" for ds, customer, items, version in rows]
    return "\n".join(lines)


def report_run(config: PipelineConfig, ds: str, stages: dict[str, float], returncode: int, log_file,
               out: TextIO = sys.stdout) -> int:
    """Collect the run's record once, print the summary, and say where to look when it failed."""
    record = collect_run_record(config, ds, stage_seconds=stages)
    write_run_record(config, record)
    if not lake.is_fresh(config.layout.run_report(ds, "html"), None):  # the report task did not get to run
        write_run_report(config, ds)
    failed = returncode != 0 or not record["decision"]
    if failed:
        print(f"The DAG run for {ds} failed (exit {returncode}). The failing task's log is in "
              f"{log_file}; search it for 'ERROR'. Fix the cause and rerun the same command for DS={ds}",
              file=sys.stderr)
        _print_errors(log_file)
    print(format_run_summary(record), file=out)
    return 1 if failed else 0


def _print_errors(log_file) -> None:
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if "ERROR" in line or "Error" in line]
    for line in lines[-12:]:
        print("  " + line[:400], file=sys.stderr)

