"""``make bench-publish``: the publish task on 1M recommendation rows (50,000 customers x 20) into PostgreSQL.

Builds a lake under a temporary folder (a validated raw day naming the customers, the day's
recommendations and audiences by user key, as score_users writes them), starts an embedded
PostgreSQL 15 on a free port, and runs the real ``publish_outputs`` three times side by side in one
run: the first publish of the day (every row new), a rerun (nothing changed: no row written, no
``updated_at`` moved), and a rerun after 10% of the scores changed. For scale, it also times row-by-row
``INSERT``s (``executemany``, what ``COPY`` replaces) on a slice and prints the ratio. Saves
``var/reports/bench-publish.json`` (``rows``, ``seconds``, ``rows_per_second`` of the first publish,
and every figure). The goal: 1M rows in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines.config import load_config
from pipelines.io import write_json_atomic
from pipelines.lake import PART_FILE, partition_path
from pipelines.local.serving_db import PORT_ENV, serving_stack, start, stop
from pipelines.local.stack import DB_USER, HOST, SERVING_DATABASE, database_password, free_port
from pipelines.publishing.connection import ServingTarget, connect
from pipelines.publishing.customers import user_key_of
from pipelines.publishing.publish import publish_outputs

DS = "2026-11-27"
KEY = "bench-only-hmac-key"


def build_lake(config, customers: int, top_k: int, campaigns: int, audience: int, changed_share: float = 0.0,
               seed: int = 7) -> int:
    rng = np.random.default_rng(seed)
    ids = [f"C{n:08d}" for n in range(customers)] + [f"anon-{n}" for n in range(customers // 10)]
    validated = partition_path(config.layout.validated_events, DS)
    validated.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({C.USER_ID: ids}), validated / PART_FILE)
    keys = np.array([user_key_of(i, KEY.encode()) for i in ids[:customers]], dtype=object)
    rows = customers * top_k
    scores = np.tile(np.linspace(10, 1, top_k, dtype=np.float32), customers)
    items = rng.integers(1, 20_000, rows)
    changed = rng.random(rows) < changed_share  # drawn after the items: the same items every time
    scores[changed] += 0.25
    recs = pa.table({C.USER_KEY: pa.array(np.repeat(keys, top_k), pa.string()),
                     C.RANK: pa.array(np.tile(np.arange(1, top_k + 1), customers), pa.int32()),
                     C.ITEM_IDX: pa.array(items, pa.int32()),
                     C.ITEM_ID: pa.array([f"I{i:05d}" for i in items], pa.string()),
                     C.SCORE: pa.array(scores, pa.float32()),
                     C.MODEL_VERSION: pa.array(["7"] * rows, pa.string())})
    members = np.concatenate([rng.choice(customers, audience, replace=False) for _ in range(campaigns)])
    auds = pa.table({C.CAMPAIGN: pa.array(np.repeat([f"campaign-{c}" for c in range(campaigns)], audience)),
                     C.RANK: pa.array(np.tile(np.arange(1, audience + 1), campaigns), pa.int32()),
                     C.USER_KEY: pa.array(keys[members], pa.string()),
                     "affinity": pa.array(rng.random(len(members)), pa.float32()),
                     C.MODEL_VERSION: pa.array(["7"] * len(members), pa.string())})
    for root, table in ((config.layout.recommendations, recs), (config.layout.audiences, auds)):
        folder = partition_path(root, DS)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / PART_FILE)
    return rows


def timed_publish(config, target) -> tuple[float, dict]:
    began = time.perf_counter()
    summary = publish_outputs(config, DS, target)
    return time.perf_counter() - began, summary


def row_inserts(target: ServingTarget, rows: int) -> float:
    """Seconds for ``rows`` one-row INSERTs (executemany) into a scratch table, for comparison."""
    connection = connect(target)
    data = [(DS, f"C{n:08d}", n % 20 + 1, f"I{n % 20000:05d}", 1.0, "7") for n in range(rows)]
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE bench_rows (ds date, customer_id text, rank smallint, item_id text, "
                           "score real, model_version text)")
            began = time.perf_counter()
            cursor.executemany("INSERT INTO bench_rows VALUES (%s, %s, %s, %s, %s, %s)", data)
            return time.perf_counter() - began
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--insert-rows", type=int, default=20_000, help="rows of the row-by-row INSERT comparison")
    args = parser.parse_args(argv)
    os.environ["PIPELINE_USER_HASH_KEY"] = KEY
    base = load_config()
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    paths = {"var_dir": str(work), "lake_dir": str(work / "lake"), "gx_dir": str(work / "gx"),
             "mlflow_dir": str(work / "mlflow"), "reports_dir": str(work / "reports")}
    config = load_config({"paths": paths, "publishing": {"schema_name": "bench"}})
    stack = serving_stack(config, {**os.environ, PORT_ENV: str(free_port())})
    start(stack)
    target = ServingTarget("bench", HOST, stack.ports.postgres, DB_USER, database_password(config), SERVING_DATABASE)
    try:
        rows = build_lake(config, args.customers, args.top_k, campaigns=10, audience=5_000)
        print(f"publishing {rows:,} recommendation rows ({args.customers:,} customers x {args.top_k}) and "
              f"50,000 audience rows to {target.describe()}", flush=True)
        figures = {}
        for name, shift in (("first publish", None), ("rerun, nothing changed", None),
                            ("rerun, 10% of scores changed", 0.10)):
            if shift:
                build_lake(config, args.customers, args.top_k, campaigns=10, audience=5_000, changed_share=shift)
            seconds, summary = timed_publish(config, target)
            tables = summary["database"]["tables"]["recommendations"]
            figures[name] = {"seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
                             **{k: tables[k] for k in ("inserted", "updated", "unchanged", "deleted")}}
            print(f"  {name:<30} {seconds:7.2f} s  {rows / seconds:>10,.0f} rows/s   inserted {tables['inserted']:,} "
                  f"updated {tables['updated']:,} unchanged {tables['unchanged']:,}", flush=True)
        insert_seconds = row_inserts(target, args.insert_rows)
        insert_rate = args.insert_rows / insert_seconds
        first = figures["first publish"]
        print(f"  row-by-row INSERT ({args.insert_rows:,} rows)  {insert_seconds:7.2f} s  {insert_rate:>10,.0f} rows/s"
              f"   -> the publish task is {first['rows_per_second'] / insert_rate:.1f}x faster per row "
              "(and does the mapping, the upsert and the export besides)")
        goal = first["seconds"] < 60
        print(f"goal: 1M rows in under 60 s: {'met' if goal else 'NOT met'} ({first['seconds']} s)")
        report = {"rows": rows, "seconds": first["seconds"], "rows_per_second": first["rows_per_second"],
                  "runs": figures, "row_inserts": {"rows": args.insert_rows, "seconds": round(insert_seconds, 2),
                                                   "rows_per_second": round(insert_rate)},
                  "customers": args.customers, "top_k": args.top_k, "cpus": os.cpu_count()}
        out = base.layout.reports_dir / "bench-publish.json"
        write_json_atomic(out, report)
        print(f"saved {out}")
        return 0
    finally:
        stop(stack)
        shutil.rmtree(stack.pg_data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
