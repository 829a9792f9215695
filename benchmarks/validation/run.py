"""``make bench-validation``: what the raw contract costs, and what worker processes gain.

Lands one raw day of N collector events as JSON Lines (default 1,000,000, with 0.5% hostile lines),
then (after an untimed warm-up) validates the same files side by side in one run, alternating over
``--repeats`` rounds: without the contract (the suite as it was before: no JSON types recorded, no
type, size, character or finite-price expectations), with it (the pipeline's default) in one
process, and with it in ``--workers`` processes (``validation.workers``). Prints wall and CPU
seconds (workers' included), events per second, peak memory (the process tree's resident memory,
sampled), the contract's cost, the workers' speed-up and whether they gave the same rows and
reasons, and saves ``var/reports/bench-validation.json``. The goal: the contract adds less than
20% to the day.

``--suite-engines`` measures instead what moving the checks to Spark would give: the day is parsed
once (``parse_part``, ``add_parsed_columns``; timed), then the same ``raw_events`` suite runs on GX's
pandas engine and on its Spark engine (``local[*]``, the frame cached first; its conversion timed
apart), alternating over ``--repeats`` rounds, and the two must fail the same rows for the same
reasons. Saved to ``var/reports/bench-validation-engines.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from pipelines.config import load_config
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path
from pipelines.validation.raw_events import validate_raw_events
from pipelines.validation.raw_events_suite import RawLimits

DS = "2026-11-27"
START = datetime(2026, 11, 27, tzinfo=UTC)
HOSTILE = [{"price": float("nan")}, {"user_id": {"id": 1}}, {"event_id": "x" * 500}, {"category": "a\x00b"},
           {"price": 1e308}, {"item_id": 4.5}]


def land_day(folder: Path, events: int, seed: int = 7, ds: str = DS, users: int | None = None,
             items: int = 5000) -> Path:
    """``events`` JSON Lines in the collector's shape, a few of them hostile; returns the partition.

    Users are drawn from ``users`` (default ``events // 20``), items from ``items``, so several days
    landed with the same ``users`` share their people, as a shop's do.
    """
    rng = random.Random(seed)
    partition = partition_path(folder / "raw", ds)
    partition.mkdir(parents=True, exist_ok=True)
    day_start = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    n_users = users or events // 20 + 1
    types = ["product_view"] * 6 + ["add_to_cart", "purchase", "search", "ad_impression"]
    with (partition / "events-00000.jsonl").open("w", encoding="utf-8") as out:
        for n in range(events):
            kind = types[n % len(types)]
            event = {"event_id": f"{ds}-e{n}" if ds != DS else f"e{n}",
                     "event_time": (day_start + timedelta(seconds=n * 86_399 // events)).isoformat(),
                     "user_id": f"u{rng.randrange(n_users)}", "session_id": f"s{n // 12}",
                     "event_type": kind, "item_id": None if kind == "search" else f"i{rng.randrange(items)}",
                     "category": f"cat-{n % 40}", "price": round(rng.uniform(1, 300), 2), "campaign": None,
                     "utm_source": "newsletter" if n % 9 == 0 else None, "device": "mobile",
                     "search_query": "winter boots" if kind == "search" else None, "email": f"u{n}@example.com",
                     "ip_address": "10.1.2.3", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
            if n % 200 == 0:
                event.update(HOSTILE[(n // 200) % len(HOSTILE)])
            out.write(json.dumps(event, allow_nan=True) + "\n")
    return partition


def measure(folder: Path, raw: Path, contract: bool, workers: int = 1, chunk_rows: int = 250_000) -> dict:
    """One validation of the day (fresh output folders), timed, with the peak memory of its process tree."""
    name = ("with contract" if contract else "without") + (f", {workers} workers" if workers > 1 else "")
    out = folder / name.replace(" ", "-").replace(",", "")
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            tree = [process, *process.children(recursive=True)]
            peak[0] = max(peak[0], sum(_rss(member) for member in tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = validate_raw_events(raw, DS, START - timedelta(days=1), START + timedelta(days=1),
                                 partition_path(out / "validated", DS), partition_path(out / "quarantine", DS),
                                 out / "gx", 1.0, RawLimits(enforce_contract=contract), chunk_rows=chunk_rows,
                                 workers=workers)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    done.set()
    sampler.join()
    return {"variant": name, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "events_per_second": round(result.rows_in / wall), "peak_gib": round(peak[0] / 2**30, 2),
            "rows_in": result.rows_in, "accepted": result.rows_accepted, "quarantined": result.rows_quarantined,
            "reasons": result.reasons}


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # a worker that just ended
        return 0


def _cpu_seconds() -> float:
    """CPU seconds of this process and its ended children (the pool's workers are reaped when it shuts down)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure_suite_engines(folder: Path, raw: Path, repeats: int) -> dict:
    """The day parsed once, then the suite on GX's pandas and Spark engines side by side (see the module doc)."""
    from pyspark.sql import SparkSession

    from pipelines.validation.jsonl import iter_line_parts, parse_part
    from pipelines.validation.raw_events_suite import (
        add_parsed_columns,
        as_spark_frame,
        run_raw_events_checkpoint,
    )

    interval = (START - timedelta(days=1), START + timedelta(days=1))
    started = time.perf_counter()
    [part] = iter_line_parts(sorted(raw.glob("*.jsonl")), raw.parent, None)
    lines = parse_part(part)
    parsed_at = time.perf_counter()
    frame = add_parsed_columns(lines.rows)
    figures = {"events": len(frame), "parse_seconds": round(parsed_at - started, 2),
               "parsed_columns_seconds": round(time.perf_counter() - parsed_at, 2)}
    del part, lines
    spark = (SparkSession.builder.master("local[*]").appName("bench-validation suite engines")
             .config(map=load_config().spark.jvm_conf())
             .config("spark.driver.memory", "8g").config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        started = time.perf_counter()
        spark_frame = as_spark_frame(spark, frame).cache()
        spark_frame.count()
        figures["to_spark_seconds"] = round(time.perf_counter() - started, 2)
        for engine, data in (("pandas", frame), ("spark", spark_frame)):  # warm-up: registration, first jobs
            run_raw_events_checkpoint(folder / "gx", data.head(1000) if engine == "pandas" else data.limit(1000),
                                      DS, *interval, engine=engine)
        outcomes: dict[str, dict] = {}
        for _ in range(repeats):
            for engine, data in (("pandas", frame), ("spark", spark_frame)):
                started = time.perf_counter()
                outcome = run_raw_events_checkpoint(folder / "gx", data, DS, *interval, engine=engine, register=False)
                seconds = time.perf_counter() - started
                best = outcomes.get(engine)
                if best is None or seconds < best["seconds"]:
                    outcomes[engine] = {"seconds": round(seconds, 2), "failing_rows": outcome.failing_rows}
    finally:
        spark.stop()
    same = outcomes["pandas"]["failing_rows"] == outcomes["spark"]["failing_rows"]
    reasons = {reason: len(rows) for reason, rows in outcomes["spark"]["failing_rows"].items()}
    return {**figures, **{f"suite_{engine}_seconds": outcome["seconds"] for engine, outcome in outcomes.items()},
            "same_failing_rows": same, "reasons": reasons}


def report_suite_engines(figures: dict) -> None:
    events, pandas_s, spark_s = figures["events"], figures["suite_pandas_seconds"], figures["suite_spark_seconds"]
    print(f"{'step':<34}{'seconds':>9}{'us/event':>10}")
    for name, seconds in (("parse the lines (one process)", figures["parse_seconds"]),
                          ("parsed columns (one process)", figures["parsed_columns_seconds"]),
                          ("frame to Spark, cached", figures["to_spark_seconds"]),
                          ("the suite on GX's pandas engine", pandas_s),
                          ("the suite on GX's Spark engine", spark_s)):
        print(f"{name:<34}{seconds:>9.1f}{seconds / events * 1e6:>10.1f}")
    print(f"the suite on Spark takes {spark_s / pandas_s:.2f}x its time on pandas ({events:,} rows; the same failing "
          f"rows and reasons: {figures['same_failing_rows']}); at 10M events a day that is some "
          f"{spark_s / events * 1e7 / 60:.1f} min of checks on this machine's cores before any parsing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the raw day")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of both variants; the best of each is shown")
    parser.add_argument("--workers", type=int, default=2,
                        help="also validate with the contract in this many worker processes (1: skip)")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="lines per part (validation.chunk_rows)")
    parser.add_argument("--root", type=Path, help="where the day and outputs go (default: a temporary folder)")
    parser.add_argument("--suite-engines", action="store_true",
                        help="instead: the suite alone on GX's pandas and Spark engines, side by side")
    args = parser.parse_args(argv)
    if args.suite_engines:
        with tempfile.TemporaryDirectory(dir=args.root) as scratch:
            raw = land_day(Path(scratch), args.events)
            figures = measure_suite_engines(Path(scratch), raw, args.repeats)
        report_suite_engines(figures)
        report = load_config().layout.reports_dir / "bench-validation-engines.json"
        write_json_atomic(report, figures)
        print(f"saved {report}")
        return 0 if figures["same_failing_rows"] else 1
    with tempfile.TemporaryDirectory(dir=args.root) as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        raw = land_day(folder, args.events)
        print(f"bench-validation: landed {args.events:,} events ({sum(f.stat().st_size for f in raw.iterdir()) / 2**20:.0f}"
              f" MiB) in {time.perf_counter() - started:.1f}s; validating twice, side by side ...", flush=True)
        warm = land_day(folder / "warm-up", 2_000)  # imports, the GX project and its Data Docs: not timed
        measure(folder / "warm-up", warm, contract=False), measure(folder / "warm-up", warm, contract=True)
        variants = [(False, 1), (True, 1), *([(True, args.workers)] if args.workers > 1 else [])]
        rounds = [[measure(folder / f"round-{n}", raw, contract, workers, args.chunk_rows)
                   for contract, workers in variants]
                  for n in range(args.repeats)]  # alternating, so drift in the machine's load hits all
    runs = [min((r[i] for r in rounds), key=lambda run: run["seconds"]) for i in range(len(variants))]  # best
    without, with_ = runs[:2]
    ratio = round(with_["seconds"] / without["seconds"], 3)
    print(f"{'variant':<26}{'events':>12}{'wall s':>9}{'cpu s':>9}{'events/s':>11}{'peak GiB':>10}{'quarantined':>13}")
    for run in runs:
        print(f"{run['variant']:<26}{run['rows_in']:>12,}{run['seconds']:>9.1f}{run['cpu_seconds']:>9.1f}"
              f"{run['events_per_second']:>11,}{run['peak_gib']:>10.2f}{run['quarantined']:>13,}")
    print(f"the contract costs {ratio - 1:+.1%} of the wall time (goal: under +20%); it refused "
          f"{with_['quarantined'] - without['quarantined']:,} more rows: "
          + ", ".join(f"{k} {v}" for k, v in with_["reasons"].items() if k not in without["reasons"]))
    if len(runs) > 2:
        parallel = runs[2]
        same = {key: parallel[key] for key in ("accepted", "quarantined", "reasons")} == \
            {key: with_[key] for key in ("accepted", "quarantined", "reasons")}
        print(f"{args.workers} worker processes: {with_['seconds'] / parallel['seconds']:.2f}x the one-process speed "
              f"({parallel['events_per_second']:,} events/s), the same rows and reasons: {same}")
    report = load_config().layout.reports_dir / "bench-validation.json"
    write_json_atomic(report, {"events": args.events, "chunk_rows": args.chunk_rows, "workers": args.workers,
                               "runs": runs, "rounds": rounds, "ratio": ratio,
                               "max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
    print(f"saved {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
