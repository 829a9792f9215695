"""Run the nightly DAG on this machine with ``airflow dags test`` (``pipelines.local.dag_test``), showing each task as it starts and ends.

The run's task states come from Airflow's public CLI (``airflow tasks states-for-dag-run -o json``),
polled while the run goes on: never from its ORM, which Airflow 3 treats as internal. The polls go
to one process that loaded the CLI once (``StatesPoller``): a fresh ``python -m airflow`` for each
look cost about 3 s of CPU, every 10 s of the run, on 2 cores. The DAG's own output goes to
``var/logs/<dag>-<ds>.log``; the terminal gets one line per task transition:

    [  41s] build_features                 running
    [  77s] build_features                 success      35.2 s
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipelines.config import PipelineConfig
from pipelines.dates import day_interval

POLL_SECONDS = 10.0  # between two looks at the run's task states
_FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


@dataclass(frozen=True)
class TaskState:
    task: str  # task_id, with [map_index] for a mapped task's instance
    state: str  # Airflow's state name; "" while none is set
    started: dt.datetime | None
    ended: dt.datetime | None

    @property
    def seconds(self) -> float | None:
        return round((self.ended - self.started).total_seconds(), 1) if self.started and self.ended else None


@contextmanager
def timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall seconds of the ``with`` block as ``stages[name]`` (rounded to 0.1 s)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(time.perf_counter() - started, 1)


# Reads one CLI command a line (its arguments, tab-separated), runs it with Airflow's own parser and
# command functions, and answers with what it printed, as one JSON string a line.
_POLLER = r"""
import contextlib, io, json, sys
from airflow.cli.cli_parser import get_parser
parser = get_parser()
for line in sys.stdin:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            args = parser.parse_args(line.rstrip("\n").split("\t"))
            args.func(args)
        except (Exception, SystemExit) as err:
            print(f"poller: {err!r}")
    sys.stdout.write(json.dumps(printed.getvalue()) + "\n")
    sys.stdout.flush()
"""


class StatesPoller:
    """One ``python`` process with Airflow's CLI loaded, for ``airflow tasks states-for-dag-run`` again
    and again; stop it with ``close`` (or use it as a context manager)."""

    def __init__(self, env: dict[str, str]):
        self._process = subprocess.Popen([sys.executable, "-c", _POLLER], env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         preexec_fn=lambda: os.nice(10))  # the run itself comes first

    def printed(self, *args: str) -> str:
        """What ``airflow <args>`` printed ("" when the poller is gone)."""
        try:
            self._process.stdin.write("\t".join(args) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except (BrokenPipeError, ValueError):
            return ""
        return json.loads(line) if line else ""

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> StatesPoller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def task_states(dag_id: str, ds: str, env: dict[str, str], since: dt.datetime | None = None,
                poller: StatesPoller | None = None) -> list[TaskState]:
    """The task instances of the run of ``dag_id`` for ``ds`` ([] before the run exists), through
    ``poller`` (or a poller of its own for this one look).

    Instances that have not started since ``since`` (an earlier run's, before ``dags test`` resets
    them) read as not started yet.
    """
    logical, _ = day_interval(ds)
    if poller is None:
        with StatesPoller(env) as own:
            return task_states(dag_id, ds, env, since, own)
    rows = cli_json(poller.printed("tasks", "states-for-dag-run", dag_id, logical.isoformat(), "-o", "json"))
    if not isinstance(rows, list):
        return []
    return sorted((_task_state(row, since) for row in rows), key=lambda s: (s.started is None, s.started or 0, s.task))


def cli_json(stdout: str):
    """The JSON document an Airflow CLI command printed with ``-o json`` (None if none).

    Airflow may print warnings to stdout before it (``[warning  ] Could not import graphviz``), so
    the document is the last line that parses as JSON.
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _task_state(row: dict[str, str], since: dt.datetime | None) -> TaskState:
    started, ended = _time(row.get("start_date")), _time(row.get("end_date"))
    index = row.get("map_index") or ""
    name = f"{row['task_id']}[{index}]" if index else row["task_id"]
    if since is not None and (started is None or started < since):
        return TaskState(name, "", None, None)
    return TaskState(name, row.get("state") or "", started, ended)


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class Progress:
    """Prints a line when a task starts running and when it finishes, with its state and seconds."""

    def __init__(self, out: TextIO, started: float):
        self._out, self._started, self._seen = out, started, {}

    def update(self, states: list[TaskState]) -> None:
        for state in states:
            if not state.state or self._seen.get(state.task) == state.state:
                continue
            if state.state in _FINISHED or state.state == "running":
                seconds = f"{state.seconds:8.1f} s" if state.seconds is not None else ""
                elapsed = time.monotonic() - self._started
                line = f"  [{elapsed:5.0f}s] {state.task:<30} {state.state:<16}{seconds}"
                print(line.rstrip(), file=self._out, flush=True)
            self._seen[state.task] = state.state


def run_dag_test(config: PipelineConfig, env: dict[str, str], ds: str, stages: dict[str, float],
                 out: TextIO = sys.stdout, poll_seconds: float = POLL_SECONDS,
                 dag_id: str | None = None) -> tuple[int, Path]:
    """``airflow dags test`` of the nightly DAG (or ``dag_id``) for ``ds``, its output in ``var/logs``;
    (exit status, log file).

    Prints each task's progress while it runs; adds the run's wall time and each task's to ``stages``.
    """
    dag_id = dag_id or config.airflow.dag_id
    log_file = config.layout.logs_dir / f"{dag_id}-{ds}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"running DAG {dag_id} for {ds} (task logs: {log_file}) ...", file=out, flush=True)
    launched, started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), time.monotonic()
    progress = Progress(out, started)
    with timed(stages, "DAG run (total)"), log_file.open("w") as log, StatesPoller(env) as poller:
        # airflow dags test, with the run's true start date (see pipelines.local.dag_test)
        process = subprocess.Popen([sys.executable, "-m", "pipelines.local.dag_test", dag_id, ds],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not _finished_within(process, poll_seconds):
                progress.update(task_states(dag_id, ds, env, since=launched, poller=poller))
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): do not leave the run going on alone
                process.terminate()
                process.wait(timeout=60)
        final = task_states(dag_id, ds, env, since=launched, poller=poller)
    progress.update(final)
    stages.update({f"  {s.task} ({s.state or 'not run'})": s.seconds or 0.0 for s in final})
    return process.returncode, log_file


def _finished_within(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True
