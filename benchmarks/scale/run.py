"""``make bench-scale``: every stage of the nightly DAG on collector-shaped days of 1M and more events.

Per size (events a day, ``--sizes``): lands ``--days`` raw days of JSON Lines as the collector would
(the validation benchmark's events: the shape of the demo's, a few hostile lines, the same people
across the days), validates the window's earlier days (their own nights: not timed), then runs the
last night's tasks one after the other, each in a process of its own, exactly as the DAG calls them
(``pipelines.tasks``; the feature job through ``spark-submit``), on a lake of its own under
``--root``. Per stage it measures wall and CPU seconds and the peak resident memory of the process
tree (the JVM and Python workers included), prints a table with how each grows from the smallest
size to the largest, and writes ``var/reports/bench-scale.json``: one entry per size and stage with
``events``, ``stage``, ``seconds``, ``peak_gib`` (and ``cpu_seconds``, ``detail``).

A stage whose memory, grown as it grew between the two sizes before, would not fit the machine
is not started (it would be killed, or push the machine into swap): the entry then says
``skipped`` with that estimate, and the stages after it are skipped with it. ``--until STAGE`` ends
each night after that stage (the table then has the stages up to it). The champion of each
size is promoted with ``promotion_mode=force`` (the events are random: the gate would rightly keep
a popularity baseline, and scoring by a model is what is measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import psutil

from benchmarks.features.run import FEATURE_JOB, _spark_env, measure, spark_command
from benchmarks.scale.stage import STAGES
from benchmarks.validation.run import land_day
from pipelines import lake
from pipelines.config import REPO_ROOT, load_config
from pipelines.io import write_json_atomic

DS = "2026-11-27"
NIGHT = ("validate_raw_events", "build_features", *STAGES[1:])
ITEMS_PER_MILLION = 5000  # distinct items per million events a day (at least 5,000)


def scale_env(root: Path, days: int, epochs: int) -> dict[str, str]:
    """The environment of one size's lake: every path under ``root``, the window, one model, one epoch."""
    from pipelines.local.environment import pipeline_environment

    env = {k: v for k, v in _spark_env().items() if not k.startswith("AIRFLOW")}  # this lake's Airflow home
    for key, sub in {"var_dir": "", "lake_dir": "lake", "gx_dir": "gx", "mlflow_dir": "mlflow",
                     "reports_dir": "reports"}.items():
        env[f"PIPELINE__PATHS__{key.upper()}"] = str(root / "var" / sub)
    env.update({"PIPELINE__FEATURES__WINDOW_DAYS": str(days), "PIPELINE__TRAINING__MODELS": "[gru4rec]",
                "PIPELINE__TRAINING__EPOCHS": str(epochs), "PIPELINE__TRAINING__MODEL_EPOCHS": "{}",
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])})
    return pipeline_environment(load_config(env=env), env)


def land_window(config, events: int, days: int) -> list[str]:
    """``days`` raw days ending at DS, ``events`` each, in the lake's raw zone; the days, oldest first."""
    end = dt.date.fromisoformat(DS)
    landed = []
    for back in range(days - 1, -1, -1):
        day = (end - dt.timedelta(days=back)).isoformat()
        scratch = config.layout.var_dir / "landing"
        partition = land_day(scratch, events, seed=back, ds=day, users=events // 20 + 1,
                             items=max(5000, ITEMS_PER_MILLION * events // 1_000_000))
        target = lake.partition_path(config.layout.raw_events, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partition, target)
        landed.append(day)
    shutil.rmtree(config.layout.var_dir / "landing", ignore_errors=True)
    return landed


def stage_command(stage: str, ds: str, state: Path, driver_memory: str, cores: int) -> list[str]:
    if stage == "build_features":
        return spark_command(FEATURE_JOB, ["--ds", ds, "--overrides", "{}"], driver_memory, cores)
    return [sys.executable, "-m", "benchmarks.scale.stage", stage, ds, str(state)]


def bench_size(root: Path, events: int, days: int, epochs: int, driver_memory: str, previous: dict,
               night: tuple[str, ...] = NIGHT) -> list[dict]:
    """The entries of one size; ``previous``: stage -> its entries at the smaller sizes (the memory guard)."""
    from pipelines.local.serving_db import PORT_ENV, embedded_serving_db, serving_stack
    from pipelines.local.stack import free_port, remove_postgres_data

    folder = root / f"events-{events}"
    env = scale_env(folder, days, epochs)
    config = load_config(env=env)
    if folder.exists():  # an earlier run's lake: its serving database's data lives outside it (as root)
        remove_postgres_data(serving_stack(config, env))
        shutil.rmtree(folder)
    state = folder / "state"
    state.mkdir(parents=True)
    started = time.perf_counter()
    landed = land_window(config, events, days)
    print(f"  landed {days} days of {events:,} events ({_size_mib(config.layout.raw_events):,.0f} MiB of JSON Lines)"
          f" in {time.perf_counter() - started:.0f} s; validating the {days - 1} earlier days (not timed) ...",
          flush=True)
    cores = os.cpu_count() or 2
    for day in landed[:-1]:
        measure(stage_command("validate_raw_events", day, state, driver_memory, cores), env)
    entries, skip_reason = [], None
    env[PORT_ENV] = str(free_port())
    with embedded_serving_db(config, env) as serving:
        env.update(serving)
        for stage in night:
            entry = {"events": events, "stage": stage, "days": days}
            skip_reason = skip_reason or _would_not_fit(stage, events, previous.get(stage, []))
            if skip_reason:
                entries.append(entry | {"seconds": None, "peak_gib": None, "skipped": skip_reason})
                print(f"  {stage:<22} skipped: {skip_reason}", flush=True)
                continue
            run = measure(stage_command(stage, DS, state, driver_memory, cores), env)
            entry |= {k: run[k] for k in ("seconds", "cpu_seconds", "peak_gib")} | {"detail": _detail(stage, state)}
            entries.append(entry)
            print(f"  {stage:<22} {run['seconds']:>8.1f} s {run['peak_gib']:>6.2f} GiB", flush=True)
    return entries


def _would_not_fit(stage: str, events: int, before: list[dict]) -> str | None:
    """Why ``stage`` is not started at ``events`` (its peak, grown as it grew over the sizes before), or None.

    The peak grows as it did between the two sizes before (events ** k, k in [0, 1]), so a stage whose
    memory is bounded is not skipped for the growth of one that is not; with fewer sizes it runs.
    """
    runs = [e for e in before if e.get("peak_gib")]
    if len(runs) < 2:  # one size says nothing of growth: fixed costs (a JVM, Keras) dominate small sizes
        return None
    first, last = runs[-2], runs[-1]
    exponent = min(1.0, max(0.0, math.log(last["peak_gib"] / first["peak_gib"])
                            / math.log(last["events"] / first["events"])))
    estimate = last["peak_gib"] * (events / last["events"]) ** exponent
    available = psutil.virtual_memory().available / 2**30
    if estimate > 0.85 * available:
        return (f"would peak near {estimate:.1f} GiB ({last['peak_gib']:.2f} GiB at {last['events']:,} events, "
                f"grown as events ** {exponent:.2f}) with {available:.1f} GiB available")
    return None


def _detail(stage: str, state: Path) -> dict:
    """A few counts of the stage's own summary, to show what it did."""
    try:
        summary = json.loads((state / f"{stage}.json").read_text())
    except FileNotFoundError:
        return {}
    keys = ("rows_in", "rows_accepted", "rows_quarantined", "users", "users_scored", "rows", "promoted",
            "sequences", "n_train", "published")
    return {k: summary[k] for k in keys if k in summary and not isinstance(summary[k], dict | list)}


def _size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*.jsonl")) / 2**20


def growth(entries: list[dict], sizes: list[int]) -> dict[str, dict]:
    """Per stage, from the smallest size to the largest run: x events -> y times the seconds and the peak."""
    out = {}
    for stage in dict.fromkeys(e["stage"] for e in entries):
        runs = [e for e in entries if e["stage"] == stage and e.get("seconds")]
        if len(runs) >= 2:
            small, large = runs[0], runs[-1]
            out[stage] = {"events_ratio": round(large["events"] / small["events"], 1),
                          "seconds_ratio": round(large["seconds"] / small["seconds"], 2),
                          "peak_ratio": round(large["peak_gib"] / max(small["peak_gib"], 0.01), 2)}
    return out


def format_table(report: dict) -> str:
    sizes = report["sizes"]
    head = f"{'stage':<22}" + "".join(f"{f'{n:,} s':>16}{'GiB':>7}" for n in sizes) + f"{'time x':>9}{'memory x':>10}"
    lines = [f"bench-scale ({report['cores']} cores, {report['days']}-day window, events a day as below; "
             f"each stage in its own process)", head]
    for stage in dict.fromkeys(e["stage"] for e in report["entries"]):
        row = f"{stage:<22}"
        for n in sizes:
            e = next((e for e in report["entries"] if e["stage"] == stage and e["events"] == n), None)
            row += (f"{'skipped':>16}{'':>7}" if not e or e.get("skipped")
                    else f"{e['seconds']:>16.1f}{e['peak_gib']:>7.2f}")
        g = report["growth"].get(stage)
        row += f"{g['seconds_ratio']:>9.2f}{g['peak_ratio']:>10.2f}" if g else f"{'':>9}{'':>10}"
        lines.append(row)
    if len(sizes) > 1:
        lines.append(f"time x, memory x: at {sizes[-1]:,} events over {sizes[0]:,} ({sizes[-1] / sizes[0]:.0f}x the "
                     f"events); 1 = flat, {sizes[-1] / sizes[0]:.0f} = linear")
    lines += [f"skipped at {e['events']:,}: {e['stage']}: {e['skipped']}" for e in report["entries"]
              if e.get("skipped")][:3]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="comma list of events a day")
    parser.add_argument("--days", type=int, default=2, help="days in the trailing window (the last one is timed)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the one model (GRU4Rec)")
    parser.add_argument("--driver-memory", default="6g", help="spark.driver.memory of the feature job")
    parser.add_argument("--root", type=Path, help="where the lakes go (default var/bench-scale); removed per size")
    parser.add_argument("--until", choices=NIGHT, default=NIGHT[-1], help="the last stage of each night")
    args = parser.parse_args(argv)
    night = NIGHT[:NIGHT.index(args.until) + 1]
    if args.days < 2:
        parser.error("--days must be at least 2 (a window with earlier days)")
    config = load_config()
    root = args.root or config.layout.var_dir / "bench-scale"
    sizes = sorted(int(s) for s in args.sizes.split(","))
    entries, previous = [], {}
    for n in sizes:
        print(f"bench-scale: {n:,} events a day ...", flush=True)
        size_entries = bench_size(root, n, args.days, args.epochs, args.driver_memory, previous, night)
        entries += size_entries
        for e in size_entries:
            previous.setdefault(e["stage"], []).append(e)
    report = {"cores": os.cpu_count(), "days": args.days, "sizes": sizes, "entries": entries,
              "growth": growth(entries, sizes), "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    path = config.layout.reports_dir / "bench-scale.json"
    write_json_atomic(path, report)
    print(format_table(report))
    print(f"saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
