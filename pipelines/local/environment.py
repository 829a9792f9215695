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
from pathlib import Path
from typing import Any

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
    env.setdefault(config.features.hash_key_env, local_hash_key(layout.secrets_dir))
    return env


def local_hash_key(secrets_dir: Path) -> str:
    """A per-machine HMAC key for user ids, created once under ``var/secrets/`` (0600).

    Production sets the key from a secret store through the environment; this only keeps the
    embedded demo working with no manual step, and stable across runs so hashes stay stable.
    """
    key_file = Path(secrets_dir) / "user-hash-key"
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


def pool_definitions(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The Airflow pools the DAGs use, as ``airflow pools import`` reads them."""
    return {config.airflow.gpu_pool: {"slots": config.airflow.gpu_pool_slots,
                                      "description": "Training tasks on the accelerator"},
            config.privacy.lake_pool: {"slots": config.privacy.lake_pool_slots,
                                       "description": "Tasks that rewrite lake partitions (nightly writers, erasure)"}}


def pools_file(config: PipelineConfig, airflow_home: Path) -> Path:
    path = Path(airflow_home) / "pools.json"
    path.write_text(json.dumps(pool_definitions(config), indent=2) + "\n")
    return path


def prepare_airflow(config: PipelineConfig, env: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database and the pools (``gpu``, ``lake_writes``; idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = [sys.executable, "-m", "airflow"]
    _run_quiet([*airflow, "db", "migrate"], env, "airflow db migrate")
    _run_quiet([*airflow, "pools", "import", str(pools_file(config, Path(env["AIRFLOW_HOME"])))], env,
               "airflow pools import")


def _run_quiet(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def shell_exports(env: dict[str, str], keys: list[str]) -> str:
    """``export K='V'`` lines for the Makefile's UI targets."""
    return "\n".join(f"export {key}='{env[key]}'" for key in keys if key in env)
