"""``make bench-features``: Spark job vs DuckDB SQL on 1M and 10M generated events (50M with --with-50m).

Per size, in one run on the same files: the Spark job (``spark-submit``, ``--outputs core``) and the
DuckDB SQL of the same core features, each in its own process tree sampled for peak memory (RSS of
the process and its children: the JVM and the Python driver). Both outputs are compared (sequences,
popularity, vocabulary, counts); a mismatch fails the run. Prints events per second, the ratio
Spark/DuckDB, peak memory and how cost grows with size; writes the same to var/reports/bench-features.json.

Two Spark runs per size: the full recompute of the 7-day window (the same work as DuckDB's), and the
scheduled night, where the earlier days' clean events were written by their own nights (run first,
untimed) and only the new day is cleaned (``--no-nightly`` skips it). The largest size's Spark run
keeps its event log, from which a table shows where the time goes (start-up, each named step's CPU,
GC, (de)serialisation, shuffle and spill).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.features.spark_breakdown import format_breakdown, read_event_log
from pipelines.config import REPO_ROOT, load_config
from pipelines.io import write_json_atomic

DS, DAYS = "2026-11-27", 7
FEATURE_JOB = REPO_ROOT / "spark_jobs" / "build_features.py"
HASH_ONCE_UP_TO = 2_000_000  # --hash-once-too: distinct users hashed once up to this (the default, 0: every row)
_KEY = "bench-only-key"


def _spark_env() -> dict[str, str]:
    import pyspark

    env = dict(os.environ, PIPELINE_USER_HASH_KEY=_KEY, SPARK_HOME=str(Path(pyspark.__file__).parent),
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def measure(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; wall seconds, CPU seconds and peak RSS (GiB) of its process tree, and its output.

    CPU seconds (user + system of the process and the children it waited for: the JVM's Python driver)
    do not depend on what else the machine runs; wall seconds do.
    """
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done = [0, []], threading.Event()

    def sample():
        root = psutil.Process(process.pid)
        while not done.wait(0.2):
            try:
                tree = [(p.pid, p.name(), p.memory_info().rss) for p in [root, *root.children(recursive=True)]]
            except psutil.Error:
                continue
            total = sum(rss for _, _, rss in tree)
            if total > peak[0]:  # keep who made up the peak, to explain it
                peak[:] = [total, [f"{name}[{pid}] {rss / 2**30:.2f}" for pid, name, rss in tree]]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command[:3])} ... failed (exit {process.returncode}):\n{output[-4000:]}")
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 1), "peak_gib": round(peak[0] / 2**30, 2),
            "peak_processes_gib": peak[1], "output": output}


def spark_command(script: Path, args: list[str], driver_memory: str, cores: int,
                  event_log: Path | None = None) -> list[str]:
    logging = ["--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={event_log.as_uri()}",
               "--conf", "spark.eventLog.compress=false"] if event_log else []
    return [str(Path(sys.executable).parent / "spark-submit"), "--master", f"local[{cores}]",
            "--driver-memory", driver_memory, "--conf", "spark.ui.enabled=false", *logging,
            "--conf", "spark.driver.extraJavaOptions=-XX:MaxDirectMemorySize=1g",  # bounds off-heap (Netty, Parquet)
            "--conf", "spark.ui.showConsoleProgress=false", "--conf", "spark.sql.session.timeZone=UTC",
            str(script), *args]


def _rows(path: Path, columns: list[str]) -> list[tuple]:
    table = pq.read_table(path, columns=columns)
    return sorted(zip(*[table.column(c).to_pylist() for c in columns], strict=True), key=repr)


def compare(spark_dir: Path, duck_dir: Path, spark_stats: dict, duck_counts: dict) -> list[str]:
    """Differences between the two outputs (empty when they agree)."""
    problems = []
    tables = {"sequences": ["user_key", "user_bucket", "item_seq", "purchased_items"],
              "item_vocab": ["item_id", "item_idx"],
              "item_popularity_windows": ["window_days", "rank", "item_idx", "n_events", "n_users"]}
    for name, columns in tables.items():
        duck_name = {"item_vocab": "vocab", "item_popularity_windows": "popularity"}.get(name, name)
        spark_rows, duck_rows = _rows(spark_dir / name, columns), _rows(duck_dir / f"{duck_name}.parquet", columns)
        if spark_rows != duck_rows:
            diff = set(spark_rows) ^ set(duck_rows) if name != "sequences" else "(sequences differ)"
            problems.append(f"{name}: {len(spark_rows)} rows (Spark) vs {len(duck_rows)} (DuckDB); e.g. "
                            f"{sorted(diff, key=repr)[:2] if isinstance(diff, set) else diff}")
    for count, value in duck_counts.items():
        ours = spark_stats.get("events_in_window" if count == "events_in_window" else count)
        if ours != value:
            problems.append(f"{count}: Spark {ours} vs DuckDB {value}")
    return problems


def bench_size(root: Path, n_events: int, cores: int, driver_memory: str, nightly: bool,
               hash_once_too: bool = False) -> dict:
    from benchmarks.features.generate import generate

    data = root / f"events-{n_events}"
    started = time.perf_counter()
    generated = generate(data / "validated", n_events, days=DAYS, end=DS)
    generate_s = time.perf_counter() - started
    env = _spark_env()
    spark_out, duck_out, event_log = data / "features", data / "duckdb", data / "spark-events"
    shutil.rmtree(event_log, ignore_errors=True)
    event_log.mkdir(parents=True)
    launched = time.time()
    job_args = _job_args(data, spark_out, DS, DAYS, cores)
    spark = measure(spark_command(FEATURE_JOB, job_args, driver_memory, cores, event_log), env)
    breakdown = read_event_log(event_log, launched)
    duck = measure([sys.executable, "-m", "benchmarks.features.duckdb_features", str(data / "validated"), str(duck_out),
                    DS, str(DAYS)], env)
    spark_stats = json.loads((spark_out / f"dt={DS}" / "_stats.json").read_text())
    duck_counts = json.loads(duck["output"].strip().splitlines()[-1])
    problems = compare(spark_out / f"dt={DS}", duck_out, spark_stats, duck_counts)
    events = generated["events"]
    result = {"events": events, "generate_seconds": round(generate_s, 1),
              "spark": {k: spark[k] for k in ("seconds", "cpu_seconds", "peak_gib", "peak_processes_gib")}
              | {"events_per_second": round(events / spark["seconds"])},
              "duckdb": {k: duck[k] for k in ("seconds", "cpu_seconds", "peak_gib")}
              | {"events_per_second": round(events / duck["seconds"])},
              "ratio_spark_over_duckdb": round(spark["seconds"] / duck["seconds"], 2),
              "cpu_ratio_spark_over_duckdb": round(spark["cpu_seconds"] / max(duck["cpu_seconds"], 0.01), 2),
              "same_results": not problems, "differences": problems, "spark_breakdown": breakdown,
              "counts": {k: spark_stats.get(k) for k in ("events_in", "duplicates_dropped", "bot_sessions",
                                                          "events_in_window", "sessions", "users_with_sequences",
                                                          "items")}}
    if hash_once_too:
        result["spark_hash_once"] = bench_hash_once(data, cores, driver_memory, env, duck, duck_counts)
    if nightly:
        result["nightly"] = bench_nightly(data, cores, driver_memory, env, duck, duck_counts)
    return result


def bench_hash_once(data: Path, cores: int, driver_memory: str, env: dict, duck: dict, duck_counts: dict) -> dict:
    """The same full recompute hashing each distinct user once (``hash_users_once_up_to: HASH_ONCE_UP_TO``).

    Sessions are then built on the raw id and the keys joined from a broadcast; the default hashes
    every row (two SHA-256), which measured faster here (README, "Sizing").
    """
    features = data / "features-hash-once"
    shutil.rmtree(features, ignore_errors=True)
    args = _job_args(data, features, DS, DAYS, cores, {"hash_users_once_up_to": HASH_ONCE_UP_TO})
    spark = measure(spark_command(FEATURE_JOB, args, driver_memory, cores), env)
    stats = json.loads((features / f"dt={DS}" / "_stats.json").read_text())
    problems = compare(features / f"dt={DS}", data / "duckdb", stats, duck_counts)
    return {"seconds": spark["seconds"], "cpu_seconds": spark["cpu_seconds"], "peak_gib": spark["peak_gib"],
            "ratio_spark_over_duckdb": round(spark["seconds"] / duck["seconds"], 2),
            "cpu_ratio_spark_over_duckdb": round(spark["cpu_seconds"] / max(duck["cpu_seconds"], 0.01), 2),
            "same_results": not problems, "differences": problems}


def _job_args(data: Path, features: Path, ds: str, window_days: int, cores: int,
              extra: dict | None = None) -> list[str]:
    settings = {"features": {"window_days": window_days, "shuffle_partitions": max(4, 2 * cores), **(extra or {})}}
    return ["--ds", ds, "--validated-root", str(data / "validated"), "--features-root", str(features),
            "--overrides", json.dumps(settings), "--outputs", "core"]


def bench_nightly(data: Path, cores: int, driver_memory: str, env: dict, duck: dict, duck_counts: dict) -> dict:
    """The scheduled night: the window's earlier days were cleaned by their own nights (run first, not timed).

    The last night then cleans only its own day and reuses the others' clean events, as the DAG does
    every night; DuckDB (no incremental form) recomputes the whole window: its time is the one measured
    above. Both outputs are compared as for the full recompute.
    """
    features = data / "features-nightly"
    shutil.rmtree(features, ignore_errors=True)
    last = dt.date.fromisoformat(DS)
    for back in range(DAYS - 1, 0, -1):  # the previous nights, each cleaning its own day
        night = (last - dt.timedelta(days=back)).isoformat()
        measure(spark_command(FEATURE_JOB,
                              _job_args(data, features, night, 1, cores), driver_memory, cores), env)
    spark = measure(spark_command(FEATURE_JOB,
                                  _job_args(data, features, DS, DAYS, cores), driver_memory, cores), env)
    stats = json.loads((features / f"dt={DS}" / "_stats.json").read_text())
    # events_in (and the dedup counts) cover only the day cleaned tonight: compare what the window holds
    window_counts = {k: v for k, v in duck_counts.items() if k in ("events_in_window", "users_with_sequences",
                                                                   "items")}
    problems = compare(features / f"dt={DS}", data / "duckdb", stats, window_counts)
    return {"seconds": spark["seconds"], "cpu_seconds": spark["cpu_seconds"], "peak_gib": spark["peak_gib"],
            "peak_processes_gib": spark["peak_processes_gib"],
            "days_reused": len(stats.get("clean_events_reused", [])),
            "ratio_spark_over_duckdb": round(spark["seconds"] / duck["seconds"], 2),
            "same_results": not problems, "differences": problems}


def growth(results: list[dict], engine: str) -> float | None:
    """Seconds per event at the largest size over that at the smallest (1.0 = linear, < 1 better)."""
    if len(results) < 2:
        return None
    small, large = results[0], results[-1]
    per_event = [r[engine]["seconds"] / r["events"] for r in (small, large)]
    return round(per_event[1] / per_event[0], 2)


def _row(r: dict, spark_seconds: float, ratio: float, cpu_ratio: float, spark_gib: float, same: bool) -> str:
    """One line of the table: a Spark run of size ``r`` beside that size's DuckDB run."""
    duck = r["duckdb"]
    return (f"{r['events']:>11,} {spark_seconds:>8.1f} {duck['seconds']:>8.1f} {round(r['events'] / spark_seconds):>11,} "
            f"{duck['events_per_second']:>11,} {ratio:>9.2f} {cpu_ratio:>7.2f} {spark_gib:>9.2f} "
            f"{duck['peak_gib']:>10.2f} {'yes' if same else 'NO':>5}")


def format_table(report: dict) -> str:
    lines = [f"bench-features ({report['cores']} cores, Spark local[{report['cores']}] driver {report['driver_memory']}; "
             f"Spark start-up alone {report['spark_startup_seconds']} s)",
             f"{'events':>11} {'spark s':>8} {'duckdb s':>8} {'spark ev/s':>11} {'duckdb ev/s':>11} {'ratio S/D':>9} "
             f"{'cpu S/D':>7} {'spark GiB':>9} {'duckdb GiB':>10} {'same':>5}"]
    for r in report["sizes"]:
        lines.append(_row(r, r["spark"]["seconds"], r["ratio_spark_over_duckdb"], r["cpu_ratio_spark_over_duckdb"],
                          r["spark"]["peak_gib"], r["same_results"]))
    once = [r for r in report["sizes"] if "spark_hash_once" in r]
    if once:
        lines.append(f"the same recompute hashing each user once (hash_users_once_up_to: {HASH_ONCE_UP_TO:,}; "
                     "the default, 0, hashes every row):")
        for r in once:
            h = r["spark_hash_once"]
            lines.append(_row(r, h["seconds"], h["ratio_spark_over_duckdb"], h["cpu_ratio_spark_over_duckdb"],
                              h["peak_gib"], h["same_results"])
                         + f"   (hashing once: {h['seconds'] / r['spark']['seconds']:.2f}x the wall time, "
                           f"{h['cpu_seconds'] / max(r['spark']['cpu_seconds'], 0.01):.2f}x the CPU of every row)")
    nightly = [r for r in report["sizes"] if "nightly" in r]
    if nightly:
        lines.append("the scheduled night (earlier days' clean events reused; DuckDB recomputes the window):")
        for r in nightly:
            n = r["nightly"]
            cpu_ratio = n["cpu_seconds"] / max(r["duckdb"]["cpu_seconds"], 0.01)
            lines.append(_row(r, n["seconds"], n["ratio_spark_over_duckdb"], cpu_ratio, n["peak_gib"],
                              n["same_results"]) + f"   ({n['days_reused']} of {report['days']} days reused)")
    g = report["growth_per_event_cost"]
    lines.append(f"cost per event, largest vs smallest size (1.0 = linear): Spark {g['spark']}, DuckDB {g['duckdb']}")
    lines.append("ratio S/D: wall seconds; cpu S/D: CPU seconds (user + system), which other jobs on the machine "
                 "do not inflate; load average during the run: " + report.get("load_average", "?"))
    largest = report["sizes"][-1]
    if largest.get("spark_breakdown"):
        lines += ["", format_breakdown(largest["events"], largest["spark_breakdown"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma list of event counts")
    parser.add_argument("--with-50m", action="store_true", help="add 50 million events")
    parser.add_argument("--driver-memory", default="5g", help="spark.driver.memory (peak must stay under 8 GiB)")
    parser.add_argument("--no-nightly", dest="nightly", action="store_false",
                        help="skip the scheduled-night run (earlier days' clean events reused)")
    parser.add_argument("--hash-once-too", action="store_true",
                        help="also run each size's recompute hashing each user once, to compare with every row")
    parser.add_argument("--root", type=Path, help="where the generated data goes (default var/bench)")
    args = parser.parse_args(argv)
    config = load_config()
    root = args.root or config.layout.var_dir / "bench"
    sizes = [int(s) for s in args.sizes.split(",")] + ([50_000_000] if args.with_50m else [])
    cores = os.cpu_count() or 2
    startup = measure(spark_command(REPO_ROOT / "benchmarks" / "features" / "spark_startup.py", [], args.driver_memory, cores),
                      _spark_env())
    results = []
    for n in sizes:
        print(f"bench-features: {n:,} events ...", flush=True)
        results.append(bench_size(root, n, cores, args.driver_memory, args.nightly, args.hash_once_too))
    report = {"load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()), "cores": cores, "days": DAYS,
              "driver_memory": args.driver_memory, "spark_startup_seconds": startup["seconds"],
              "sizes": results, "growth_per_event_cost": {e: growth(results, e) for e in ("spark", "duckdb")}}
    path = config.layout.reports_dir / "bench-features.json"
    write_json_atomic(path, report)
    print(format_table(report))
    print(f"saved to {path}")
    bad = [r for r in results if not r["same_results"] or not r.get("nightly", {}).get("same_results", True)
           or not r.get("spark_hash_once", {}).get("same_results", True)]
    for r in bad:
        print(f"DIFFERENT RESULTS at {r['events']:,} events: {r['differences']} "
              f"{r.get('nightly', {}).get('differences', '')}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
