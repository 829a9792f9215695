"""Command line: ``python -m pipelines <command>`` (the Makefile's targets call these).

  run [--ds D]     land the demo clickstream, run the nightly DAG for D end to end, print the summary
  run-imported --ds D
                   the same on imported data (make import first); lands no demo
  land-demo [--ds D]
                   only land the demo clickstream ending at D
  env              print the embedded environment as shell exports (for make airflow-ui)
  rollback --reason R [--to-version N] [--allow-erased-training-data]
                   move the champion back to the previous approved version (recorded with who and why)
  erase --customer ID --reason R [--kind erase|suppress] [--no-run]
                   request a customer's erasure, then run the privacy_erasure DAG for today
  erasure-status   every erasure request's status and counts; open and overdue ones
  report [--ds D]  (re)write the run report of D from what the lake and MLflow hold
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.dates import DateError, parse_ds
from pipelines.local.environment import EnvironmentProblem, pipeline_environment, shell_exports

COMMANDS = ("run", "run-imported", "land-demo", "env", "rollback", "report", "erase", "erasure-status")
_EXPORTED = ("AIRFLOW", "PYSPARK", "PIPELINE", "KERAS", "PYTHONPATH", "PATH")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--ds", default=None, help="logical date YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--reason", default="", help="rollback: why (kept in the champion history)")
    parser.add_argument("--to-version", default=None, help="rollback: version to restore (default: the previous)")
    parser.add_argument("--allow-erased-training-data", action="store_true",
                        help="rollback: restore a version trained on data of people erased since (say why)")
    parser.add_argument("--customer", default="", help="erase: the customer (user) id")
    parser.add_argument("--kind", default="erase", choices=("erase", "suppress"),
                        help="erase: erase everything, or suppress (stop processing, keep the raw zone)")
    parser.add_argument("--no-run", action="store_true", help="erase: only record the request (the daily run does it)")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        if args.command == "run-imported" and args.ds is None:
            raise DateError("--ds is required for run-imported: pick a day the import landed, e.g. --ds 2019-10-01")
        return _dispatch(args, config, parse_ds(args.ds))
    except (ConfigError, DateError, EnvironmentProblem) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, config: PipelineConfig, ds: str) -> int:
    if args.command == "env":
        env = pipeline_environment(config)
        print(shell_exports(env, sorted(k for k in env if k.startswith(_EXPORTED))))
        return 0
    if args.command == "land-demo":
        from pipelines.local.runner import land_demo

        print(land_demo(config, ds))
        return 0
    os.environ.update(pipeline_environment(config))  # this process reads the same stores as the tasks
    if args.command == "rollback":
        return _rollback(config, args.reason, args.to_version, args.allow_erased_training_data)
    if args.command in ("erase", "erasure-status"):
        return _privacy(args, config)
    if args.command == "report":
        from pipelines import tasks

        print(tasks.write_run_report(ds)["html"])
        return 0
    from pipelines.local.runner import run_nightly

    return run_nightly(config, ds, demo=args.command == "run")


def _privacy(args: argparse.Namespace, config: PipelineConfig) -> int:
    import datetime as dt

    from pipelines.local.runner import run_privacy
    from pipelines.privacy.requests import RequestError, submit_request
    from pipelines.privacy.status import erasure_status, format_status
    from pipelines.registry.champion import current_user

    if args.command == "erasure-status":
        status = erasure_status(config)
        print(format_status(status))
        return 1 if status["overdue"] else 0
    if not args.reason.strip():
        print("error: say why (make erase CUSTOMER=... REASON='GDPR art. 17, ticket 4411'); it is kept in the audit",
              file=sys.stderr)
        return 2
    try:
        request = submit_request(config, args.customer, args.kind, current_user(), args.reason)
    except RequestError as err:
        print(f"error: customer {args.customer!r}: {err}", file=sys.stderr)
        return 2
    print(f"request {request.request_id} ({request.kind}) recorded in {config.layout.privacy_requests}")
    if args.no_run:
        return 0
    return run_privacy(config, dt.datetime.now(dt.UTC).date().isoformat())


def _rollback(config: PipelineConfig, reason: str, to_version: str | None, allow_erased: bool = False) -> int:
    from pipelines import tasks
    from pipelines.registry.champion import RegistryError

    try:
        entry = tasks.rollback_champion(reason, to_version=to_version, allow_erased_training_data=allow_erased)
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"champion of {config.promotion.registered_model}: version {entry['previous_version']} -> "
          f"{entry['version']} ({entry['who']}: {entry['reason']}); history: {config.layout.champion_history}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
