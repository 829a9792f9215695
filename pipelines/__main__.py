"""Command line: ``python -m pipelines <command>`` (the Makefile's targets call these).

  run [--ds D]     land the demo clickstream, run the nightly DAG for D end to end, print the summary
  land-demo [--ds D]
                   only land the demo clickstream ending at D
  env              print the embedded environment as shell exports (for make airflow-ui)
  rollback --reason R [--to-version N]
                   move the champion back to the previous approved version (recorded with who and why)
  report [--ds D]  (re)write the run report of D from what the lake and MLflow hold
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.runtime import (
    EnvironmentProblem,
    check_java,
    pipeline_environment,
    prepare_airflow,
    shell_exports,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "land-demo", "env", "rollback", "report"])
    parser.add_argument("--ds", default=None, help="logical date YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--reason", default="", help="rollback: why (kept in the champion history)")
    parser.add_argument("--to-version", default=None, help="rollback: version to restore (default: the previous)")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        ds = _parse_ds(args.ds)
        if args.command == "env":
            env = pipeline_environment(config)
            print(shell_exports(env, sorted(k for k in env if k.startswith(("AIRFLOW", "PYSPARK", "PIPELINE",
                                                                           "KERAS", "PYTHONPATH", "PATH")))))
            return 0
        if args.command == "land-demo":
            print(land_demo(config, ds))
            return 0
        if args.command == "rollback":
            return rollback(config, args.reason, args.to_version)
        if args.command == "report":
            os.environ.update(pipeline_environment(config))
            from pipelines.report import write_run_report

            print(write_run_report(config, ds)["html"])
            return 0
        return run_nightly(config, ds)
    except (ConfigError, EnvironmentProblem) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _parse_ds(value: str | None) -> str:
    if value is None:
        return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--ds {value!r}: not a date; use YYYY-MM-DD, e.g. --ds 2026-11-27") from None


def land_demo(config: PipelineConfig, ds: str) -> dict:
    from pipelines.demo import generate_demo_clickstream

    demo = config.demo
    return generate_demo_clickstream(config.layout.raw_events, end_date=dt.date.fromisoformat(ds),
                                     days=demo.days, n_users=demo.n_users, n_items=demo.n_items,
                                     events_per_day=demo.events_per_day, seed=demo.seed,
                                     collector_noise_rate=demo.collector_noise_rate)


def rollback(config: PipelineConfig, reason: str, to_version: str | None) -> int:
    from pipelines.registry import RegistryError, current_user, rollback_champion

    os.environ.update(pipeline_environment(config))
    try:
        entry = rollback_champion(config, reason, current_user(), to_version=to_version)
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"champion of {config.promotion.registered_model}: version {entry['previous_version']} -> "
          f"{entry['version']} ({entry['who']}: {entry['reason']}); history: {config.layout.champion_history}")
    return 0


def validate_history(config: PipelineConfig, ds: str) -> None:
    """Validate the demo's days before ``ds`` as the previous nights' runs would have.

    The feature job reads the validated days of its trailing window; on a real deployment earlier
    nights (or a backfill) validated them. This is the DAG's own task function, one day at a time.
    """
    from pipelines.tasks import validate_raw_events
    from pipelines.validation.checks import DataCheckError
    from pipelines.validation.raw_events import RawDataError

    last = dt.date.fromisoformat(ds)
    for offset in range(config.demo.days - 1, 0, -1):
        day = (last - dt.timedelta(days=offset)).isoformat()
        record = config.layout.checks / f"dt={day}" / "raw_events.json"
        if not record.exists() or '"drift"' not in record.read_text():  # none yet, or from before drift checks
            try:
                validate_raw_events(day)
            except (RawDataError, DataCheckError) as err:  # that night's run would have stopped; go on
                print(f"warning: dt={day} failed its data checks: {err}", file=sys.stderr)


def run_nightly(config: PipelineConfig, ds: str) -> int:
    """Set up the embedded services, land the demo, run the DAG for ``ds`` and print the summary."""
    check_java()
    env = pipeline_environment(config)
    stages: dict[str, float] = {}
    started = time.perf_counter()
    prepare_airflow(config, env)
    stages["airflow metadata (db migrate)"] = time.perf_counter() - started
    started = time.perf_counter()
    land_demo(config, ds)
    stages["land demo clickstream"] = time.perf_counter() - started
    started = time.perf_counter()
    validate_history(config, ds)
    stages["validate earlier demo days"] = time.perf_counter() - started
    log_file = config.layout.var_dir / "logs" / f"{config.airflow.dag_id}-{ds}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"running DAG {config.airflow.dag_id} for {ds} (task logs: {log_file}) ...", flush=True)
    started = time.perf_counter()
    with log_file.open("w") as log:
        done = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", config.airflow.dag_id, ds],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    stages["DAG run (total)"] = time.perf_counter() - started
    os.environ.update(env)
    from pipelines.summary import airflow_task_durations, collect_run_summary, format_run_summary

    durations = airflow_task_durations(config.airflow.dag_id, ds)
    stages.update({f"  {task}": seconds for task, seconds in durations.items()})

    summary = collect_run_summary(config, ds, {k: round(v, 1) for k, v in stages.items()})
    if not Path(summary["report"]).exists():  # the DAG's report task did not get to run: write it here
        from pipelines.report import write_run_report

        write_run_report(config, ds)
    failed = done.returncode != 0 or not summary["decision"]
    if failed:
        print(f"The DAG run for {ds} failed (exit {done.returncode}). The failing task's log is in "
              f"{log_file}; search it for 'ERROR'. Fix the cause and rerun: make run DS={ds}", file=sys.stderr)
        _print_errors(log_file)
    print(format_run_summary(summary))
    return 1 if failed else 0


def _print_errors(log_file: Path) -> None:
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if "ERROR" in line or "Error" in line]
    for line in lines[-12:]:
        print("  " + line[:400], file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
