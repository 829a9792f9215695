"""``make bench-stack``: one night on the stack with each Celery worker's libraries preloaded, one without.

Starts the stack of ``make stack-up`` (``pipelines.local.stack``) in a var/ of its own on free ports,
with the suite's small config (``PIPELINE_ENV=test``, 2 epochs, as the stack tier runs it), lands the
demo and validates the days before the first night by hand. Then, through Airflow's REST API:

1. the scheduler's night of yesterday (warm-up: the first night on a fresh stack; not compared);
2. a backfill of day D with the workers started *without* ``pipelines.local.worker_preload``;
3. a backfill of D + 1 with the workers started *with* it (as ``make stack-up`` runs them).

Both nights train every model (a new day) and see a champion as of their day. Prints each task's
seconds (from its task instance) side by side, the night's wall seconds and the ratios, and writes
``var/reports/bench-stack.json``. The stack is stopped by its pids at the end, also on failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

from pipelines.config import REPO_ROOT

DAG = "clickstream_nightly"
EXTRA = "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"
WORKERS = ("airflow-worker", "airflow-worker-gpu")
RUN_TIMEOUT = 900


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def night(api, run: dict) -> dict:
    """{"state", "wall", "tasks": {task (model for a mapped one): seconds}} of a finished run."""
    tasks = {}
    for ti in api.task_instances(DAG, run["dag_run_id"]):
        name = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti.get('rendered_map_index') or ti['map_index']}]"
        tasks[name] = round(float(ti.get("duration") or _seconds(ti["start_date"], ti["end_date"])), 1)
    return {"state": run["state"], "wall": round(_seconds(run["start_date"], run["end_date"]), 1), "tasks": tasks}


def restart_workers(stack, preload: bool) -> None:
    from pipelines.local.stack import PRELOAD_MODULE, down, services, up

    if preload:
        stack.env[EXTRA] = json.dumps({"imports": [PRELOAD_MODULE]})
    else:
        stack.env.pop(EXTRA, None)
    down(stack, every=[s for s in services(stack) if s.name in WORKERS])
    up(stack)


def run_day(api, day: str) -> dict:
    from pipelines.local.airflow_api import AirflowApiError

    before = {run["dag_run_id"] for run in api.runs(DAG)}
    deadline = time.monotonic() + 120
    while True:  # the scheduler marks the previous backfill complete a little after its run ended
        try:
            api.backfill(DAG, day, day)
            break
        except AirflowApiError as err:
            if "already a running backfill" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = [run for run in api.runs(DAG) if run["dag_run_id"] not in before]
        if new:
            return night(api, api.wait_for_run(DAG, new[0]["dag_run_id"], RUN_TIMEOUT))
        time.sleep(2)
    raise RuntimeError(f"bench-stack: the backfill of {day} created no run within 120 s; see the scheduler's log")


def format_table(report: dict) -> str:
    bare, preloaded = report["bare"], report["preloaded"]
    lines = [f"{'task':34s} {'bare s':>8s} {'preloaded s':>12s} {'ratio':>6s}"]
    for task in sorted(set(bare["tasks"]) | set(preloaded["tasks"])):
        b, p = bare["tasks"].get(task, 0.0), preloaded["tasks"].get(task, 0.0)
        lines.append(f"{task:34s} {b:8.1f} {p:12.1f} {p / b if b else float('nan'):6.2f}")
    sb, sp = sum(bare["tasks"].values()), sum(preloaded["tasks"].values())
    lines.append(f"{'sum of task seconds':34s} {sb:8.1f} {sp:12.1f} {sp / sb:6.2f}")
    lines.append(f"{'night, wall':34s} {bare['wall']:8.1f} {preloaded['wall']:12.1f} "
                 f"{preloaded['wall'] / bare['wall']:6.2f}")
    lines.append(f"worker start (ready), bare {report['worker_start_seconds']['bare']} s, "
                 f"preloaded {report['worker_start_seconds']['preloaded']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "var" / "bench-stack",
                        help="the stack's var/ (emptied first)")
    args = parser.parse_args(argv)
    from pipelines.local.stack import free_port

    root = args.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    os.environ.update({"PIPELINE_ENV": "test", "PIPELINE__TRAINING__EPOCHS": "2",
                       **{f"PIPELINE__PATHS__{key.upper()}": str(root / sub) for key, sub in
                          (("var_dir", ""), ("lake_dir", "lake"), ("gx_dir", "gx"), ("mlflow_dir", "mlflow"),
                           ("reports_dir", "reports"))},
                       **{f"PIPELINE_STACK_{name}_PORT": str(free_port()) for name in
                          ("POSTGRES", "REDIS", "AIRFLOW", "MLFLOW", "SPARK", "SPARK_UI", "SPARK_WORKER_UI",
                           "WORKER_LOGS")}})
    from pipelines.config import load_config
    from pipelines.local.airflow_api import AirflowApi
    from pipelines.local.runner import land_demo, validate_earlier_days
    from pipelines.local.stack import ADMIN, build_stack, down, up

    config = load_config()
    today = dt.datetime.now(dt.UTC).date()
    bare_day, preloaded_day = (str(today - dt.timedelta(days=n)) for n in (4, 3))  # the warm-up is yesterday
    stack = build_stack(config)
    report: dict = {"worker_start_seconds": {}}
    try:
        up(stack)
        api = AirflowApi(stack.airflow_url, ADMIN, stack.admin_password())
        land_demo(config, today.isoformat())
        validate_earlier_days(config, bare_day)
        api.set_paused(DAG, False)  # the scheduler runs yesterday's night: the warm-up
        deadline = time.monotonic() + 120
        while not api.runs(DAG) and time.monotonic() < deadline:
            time.sleep(2)
        report["warm-up"] = night(api, api.wait_for_run(DAG, api.runs(DAG)[0]["dag_run_id"], RUN_TIMEOUT))
        for mode, day in (("bare", bare_day), ("preloaded", preloaded_day)):
            started = time.monotonic()
            restart_workers(stack, preload=mode == "preloaded")
            report["worker_start_seconds"][mode] = round(time.monotonic() - started, 1)
            report[mode] = {"ds": day, **run_day(api, day)}
            print(f"bench-stack: {mode} night of {day}: {report[mode]['state']} in {report[mode]['wall']} s", flush=True)
            if report[mode]["state"] != "success":
                raise RuntimeError(f"bench-stack: the {mode} night of {day} failed; see {stack.state_dir / 'logs'}")
    finally:
        down(stack)
        shutil.rmtree(stack.pg_data, ignore_errors=True)
    print(format_table(report))
    out = REPO_ROOT / "var" / "reports" / "bench-stack.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
