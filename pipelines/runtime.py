"""Where the pipeline runs on one machine: the embedded Airflow, Spark and secrets set-up.

This is the only module that knows how the embedded defaults are wired (Airflow home and SQLite
metadata under ``var/``, the ``spark_default`` connection as ``local[*]``, the virtualenv's
``spark-submit`` on PATH). Every value already set in the environment wins, so the same code runs
against a PostgreSQL-backed Airflow or a Spark cluster when the environment says so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.config import REPO_ROOT, PipelineConfig

MIN_JAVA = 17


class EnvironmentProblem(RuntimeError):
    """The machine lacks something the pipeline needs (Java, a writable var/ ...)."""


def pipeline_environment(config: PipelineConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Airflow, its tasks and spark-submit; values already in ``base`` win."""
    env = dict(os.environ if base is None else base)
    layout = config.layout
    venv_bin = str(Path(sys.executable).parent)
    airflow_home = env.setdefault("AIRFLOW_HOME", str(layout.airflow_home))
    defaults = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{Path(airflow_home) / 'airflow.db'}",
        f"AIRFLOW_CONN_{config.spark.conn_id.upper()}": json.dumps({"conn_type": "spark", "host": "local[*]"}),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")])),
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env.setdefault(config.features.hash_key_env, local_hash_key(layout.var_dir))
    return env


def local_hash_key(var_dir: Path) -> str:
    """A per-machine HMAC key for user ids, created once under ``var/secrets/`` (0600).

    Production sets the key from a secret store through the environment; this only keeps the
    embedded demo working with no manual step, and stable across runs so hashes stay stable.
    """
    key_file = Path(var_dir) / "secrets" / "user-hash-key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def check_java(java: str | None = None) -> str:
    """Return the Java version string, or raise with the one line a person needs."""
    java = java or shutil.which("java")
    if java is None:
        raise EnvironmentProblem(f"java not found: Spark needs Java {MIN_JAVA}+; install it "
                                 "(e.g. apt-get install openjdk-17-jre-headless) and rerun")
    output = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    major = int(match.group(1)) if match else 0
    major = int(match.group(2)) if major == 1 and match and match.group(2) else major
    if major < MIN_JAVA:
        raise EnvironmentProblem(f"{java} is Java {major or 'of unknown version'}; Spark needs Java "
                                 f"{MIN_JAVA}+; install it and put it first on PATH (or set JAVA_HOME)")
    return output.splitlines()[0] if output else f"java {major}"


def prepare_airflow(config: PipelineConfig, env: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database and the ``gpu`` pool (both idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = [sys.executable, "-m", "airflow"]
    _run_quiet([*airflow, "db", "migrate"], env, "airflow db migrate")
    _run_quiet([*airflow, "pools", "set", config.airflow.gpu_pool, str(config.airflow.gpu_pool_slots),
                "Training tasks on the accelerator"], env, "airflow pools set")


def _run_quiet(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def shell_exports(env: dict[str, str], keys: list[str]) -> str:
    """``export K='V'`` lines for the Makefile's UI targets."""
    return "\n".join(f"export {key}='{env[key]}'" for key in keys if key in env)


@contextmanager
def timed(stages: dict[str, float], name: str):
    """Record the wall seconds of the ``with`` block as ``stages[name]`` (rounded to 0.1 s)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(time.perf_counter() - started, 1)


def run_dag_test(config: PipelineConfig, env: dict[str, str], ds: str, stages: dict[str, float]) -> tuple[int, Path]:
    """``airflow dags test`` of the nightly DAG for ``ds``, its output in ``var/logs``; (exit status, log file).

    Adds the run's wall time and each task's (from Airflow's metadata) to ``stages``.
    """
    log_file = config.layout.var_dir / "logs" / f"{config.airflow.dag_id}-{ds}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"running DAG {config.airflow.dag_id} for {ds} (task logs: {log_file}) ...", flush=True)
    with timed(stages, "DAG run (total)"), log_file.open("w") as log:
        done = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", config.airflow.dag_id, ds],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    os.environ.update(env)  # this process now reads the metadata (and MLflow store) the run wrote
    stages.update({f"  {task}": seconds for task, seconds in airflow_task_durations(config.airflow.dag_id, ds).items()})
    return done.returncode, log_file


def airflow_task_durations(dag_id: str, ds: str) -> dict[str, float]:
    """Wall time of each task instance of the latest run of ``dag_id`` for ``ds``, from Airflow's metadata."""
    import datetime as dt

    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    logical = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    with create_session() as session:
        run = (session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.logical_date == logical)
               .order_by(DagRun.id.desc()).first())
        if run is None:
            return {}
        instances = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                                                       TaskInstance.run_id == run.run_id).all()
        rows = sorted((ti.start_date or run.start_date, ti.task_id, ti.map_index, ti.duration or 0.0, ti.state)
                      for ti in instances)
    return {f"{task}{f'[{index}]' if index >= 0 else ''} ({state})": round(float(duration), 1)
            for _, task, index, duration, state in rows}
