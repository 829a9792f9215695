"""``make bench-erasure``: erase 100 customers from the 14-day demo lake of ``make run``, against erasing one.

Copies what ``make run`` left under ``var/`` (the lake, the Data Docs, the logs, the reports, MLflow)
to a temporary folder, publishes its day into an embedded PostgreSQL 15 on a free port, then runs the
real intake and ``erase_pending`` twice, side by side in one run: one customer, then 100 others (the
customers of the day's serving tables, in a fixed order). It prints the seconds, the rows removed per
store and the seconds per customer of each, and saves ``var/reports/bench-erasure.json``. The goal:
100 customers in under 120 s on 2 cores; a batch costs about one pass over the partitions that hold
them, so 100 customers should cost far less than 100 times one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines import lake
from pipelines.config import load_config
from pipelines.io import write_json_atomic
from pipelines.local.environment import pipeline_environment
from pipelines.local.serving_db import PORT_ENV, serving_stack, start, stop
from pipelines.local.stack import DB_USER, HOST, SERVING_DATABASE, database_password, free_port
from pipelines.privacy.erasure import erase_pending
from pipelines.privacy.requests import accept_requests, submit_request
from pipelines.publishing.connection import ServingTarget
from pipelines.publishing.publish import publish_outputs


def copy_var(base, work: Path) -> dict[str, str]:
    layout = base.layout
    paths = {"var_dir": work, "lake_dir": work / "lake", "gx_dir": work / "gx", "mlflow_dir": work / "mlflow",
             "reports_dir": work / "reports"}
    for source, name in ((layout.lake_dir, "lake_dir"), (layout.gx_dir, "gx_dir"), (layout.mlflow_dir, "mlflow_dir"),
                         (layout.reports_dir, "reports_dir"), (layout.logs_dir, None)):
        if source.is_dir():
            shutil.copytree(source, paths[name] if name else work / "logs", symlinks=True,
                            ignore=shutil.ignore_patterns(".lock-*"))
    return {key: str(value) for key, value in paths.items()}


def customers_of(config, ds: str, count: int) -> list[str]:
    """Customers of the day with recommendations: ids of the validated day, not anonymous, in a fixed order."""
    import re

    anonymous = re.compile(config.publishing.anonymous_user_ids)
    ids = pq.read_table(lake.partition_path(config.layout.validated_events, ds), columns=[C.USER_ID])
    users = sorted({user for user in ids.column(C.USER_ID).to_pylist() if user and not anonymous.search(user)})
    return users[:count]


def erase(config, target, customers: list[str]) -> dict:
    began = time.perf_counter()
    for customer in customers:
        submit_request(config, customer, "erase", "bench", "bench-erasure")
    accept_requests(config)
    summary = erase_pending(config, target)
    seconds = time.perf_counter() - began
    removed = Counter()
    for outcome in summary["outcomes"].values():
        removed.update({store: n for store, n in outcome.items() if store not in ("status", "identifiers")})
    return {"customers": len(customers), "seconds": round(seconds, 2), "done": summary["done"],
            "not_found": summary["not_found"], "removed": dict(removed),
            "seconds_per_customer": round(seconds / len(customers), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    args = parser.parse_args(argv)
    base = load_config()
    days = sorted(lake.day_folders(base.layout.recommendations))
    if not days:
        print(f"error: {base.layout.recommendations} holds no day: run `make run` first (the benchmark erases "
              "customers from the lake it leaves)", file=sys.stderr)
        return 2
    os.environ.update({k: v for k, v in pipeline_environment(base).items() if k == base.features.hash_key_env})
    work = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    stack = None
    try:
        config = load_config({"paths": copy_var(base, work), "publishing": {"schema_name": "bench_erasure"}})
        stack = serving_stack(config, {**os.environ, PORT_ENV: str(free_port())})
        start(stack)
        target = ServingTarget("bench", HOST, stack.ports.postgres, DB_USER, database_password(config),
                               SERVING_DATABASE)
        ds = days[-1]
        publish_outputs(config, ds, target)
        raw_days = len(lake.day_folders(config.layout.raw_events))
        people = customers_of(config, ds, args.customers + 1)
        print(f"lake: {raw_days} raw days, features of {len(lake.day_folders(config.layout.features))} day(s), "
              f"day {ds} published to {target.describe()}; erasing 1 customer, then {args.customers}", flush=True)
        runs = {"one customer": erase(config, target, people[:1]),
                f"{args.customers} customers": erase(config, target, people[1:])}
        for name, run in runs.items():
            print(f"  {name:<16} {run['seconds']:7.2f} s  ({run['seconds_per_customer']:.3f} s per customer)  "
                  f"done {run['done']}  removed {run['removed']}", flush=True)
        one, many = runs["one customer"], runs[f"{args.customers} customers"]
        print(f"  {args.customers} customers cost {many['seconds'] / one['seconds']:.1f}x one customer "
              f"({args.customers}x if each were erased alone)")
        goal = many["seconds"] < 120
        print(f"goal: {args.customers} customers in under 120 s: {'met' if goal else 'NOT met'} ({many['seconds']} s)")
        out = base.layout.reports_dir / "bench-erasure.json"
        write_json_atomic(out, {"raw_days": raw_days, "ds": ds, "runs": runs, "cpus": os.cpu_count(), "goal_met": goal})
        print(f"saved {out}")
        return 0
    finally:
        if stack is not None:
            stop(stack)
            shutil.rmtree(stack.pg_data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
