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
import sys
from pathlib import Path

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.runtime import (
    EnvironmentProblem,
    check_java,
    pipeline_environment,
    prepare_airflow,
    run_dag_test,
    shell_exports,
    timed,
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
    with timed(stages, "airflow metadata (db migrate)"):
        prepare_airflow(config, env)
    with timed(stages, "land demo clickstream"):
        land_demo(config, ds)
    with timed(stages, "validate earlier demo days"):
        validate_history(config, ds)
    returncode, log_file = run_dag_test(config, env, ds, stages)
    from pipelines.summary import collect_run_summary, format_run_summary

    summary = collect_run_summary(config, ds, stages)
    if not Path(summary["report"]).exists():  # the DAG's report task did not get to run: write it here
        from pipelines.report import write_run_report

        write_run_report(config, ds)
    failed = returncode != 0 or not summary["decision"]
    if failed:
        print(f"The DAG run for {ds} failed (exit {returncode}). The failing task's log is in "
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
