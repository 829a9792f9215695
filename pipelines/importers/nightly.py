"""``make run-imported DS=D``: the nightly DAG on imported data, as ``make run`` does on the demo.

Validates the imported days of D's trailing window that no earlier night validated (each with the
DAG's own task function, like ``make run`` does for the demo's history), then runs the DAG for D with
``airflow dags test`` and prints the run summary. It never lands the demo: import first, e.g.

    make import MAPPING=conf/mappings/rees46.yaml INPUT=../shared/datasets/rees46-sample/events.csv
    make run-imported DS=2019-10-01
"""

from __future__ import annotations

import argparse
import sys

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.features.partitions import window_partitions
from pipelines.runtime import (
    EnvironmentProblem,
    check_java,
    pipeline_environment,
    prepare_airflow,
    run_dag_test,
    timed,
)


def validate_window(config: PipelineConfig, ds: str) -> dict[str, str]:
    """Validate the raw days before ``ds`` in its window that have no check record yet; day -> outcome."""
    from pipelines.tasks import validate_raw_events

    outcomes = {}
    for folder in window_partitions(config.layout.raw_events, ds, config.features.window_days):
        day = folder.name.removeprefix("dt=")
        if day == ds or (config.layout.lake_dir / "checks" / folder.name / "raw_events.json").exists():
            continue
        try:
            summary = validate_raw_events(day)
            outcomes[day] = f"{summary['rows_accepted']} accepted, {summary['rows_quarantined']} quarantined"
        except ValueError as err:  # RawDataError, DataCheckError: the day is refused; the reason is printed
            outcomes[day] = f"refused: {err}"
    return outcomes


def run_imported(config: PipelineConfig, ds: str) -> int:
    if not (config.layout.raw_events / f"dt={ds}").is_dir():
        print(f"error: {config.layout.raw_events}/dt={ds} does not exist: import the export first "
              f"(make import MAPPING=... INPUT=...) and pick a DS that has data", file=sys.stderr)
        return 2
    check_java()
    env = pipeline_environment(config)
    if ds < config.airflow.start_date.isoformat():  # exports are often older than the DAG's start_date,
        env["PIPELINE__AIRFLOW__START_DATE"] = ds  # before which Airflow would run no task at all
    stages: dict[str, float] = {}
    with timed(stages, "airflow metadata (db migrate)"):
        prepare_airflow(config, env)
    with timed(stages, "validate earlier imported days"):
        outcomes = validate_window(config, ds)
    print(f"validated {len(outcomes)} earlier imported day(s) of the window in "
          f"{stages['validate earlier imported days']:.0f}s")
    for day, outcome in outcomes.items():
        if outcome.startswith("refused"):
            print(f"  {day}: {outcome}")
    returncode, log_file = run_dag_test(config, env, ds, stages)
    from pipelines.summary import collect_run_summary, format_run_summary

    print(format_run_summary(collect_run_summary(config, ds, stages)))
    if returncode != 0:
        print(f"\nThe DAG run for {ds} failed (exit {returncode}); see {log_file}", file=sys.stderr)
    return returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.importers.nightly", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True, help="logical date YYYY-MM-DD of a day the import landed")
    args = parser.parse_args(argv)
    try:
        return run_imported(load_config(), args.ds)
    except (ConfigError, EnvironmentProblem) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
