"""Run a stage in its own process against a lake under tmp, optionally killed with SIGKILL mid-write.

``run_stage(root, code, fault)`` runs ``code`` (Python, with ``config`` = the lake's config loaded)
in a fresh interpreter with ``PIPELINE_FAULT_POINT=fault``; the stage's own write then kills the
process at that point (``pipelines.io.fault_point``), exactly as a SIGKILL from outside would.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pipelines.config import REPO_ROOT, load_config
from pipelines.io import FAULT_POINT_ENV

PATH_KEYS = ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")
KILLED = -signal.SIGKILL


def lake_env(root: Path, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE__PATHS__") and k != FAULT_POINT_ENV}
    env.update({f"PIPELINE__PATHS__{key.upper()}": str(root / key) for key in PATH_KEYS})
    if fault:
        env[FAULT_POINT_ENV] = fault
    return env


def lake_config(root: Path):
    return load_config({"paths": {key: str(root / key) for key in PATH_KEYS}})


def run_stage(root: Path, code: str, fault: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    script = "from pipelines.config import load_config\nconfig = load_config()\n" + code
    return subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=lake_env(root, fault),
                          capture_output=True, text=True, timeout=timeout)


def leftovers(folder: Path) -> list[str]:
    """Hidden staging, retired and lock entries anywhere under ``folder`` (a clean lake has none)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name.startswith((".staging-", ".retired-", ".lock-")))


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once for the whole test session, also across pytest-xdist's workers: the first
    to ask builds under a lock, the others wait for it and get the same folder. The folder stays where it
    was built (records in it name their own paths); a build that did not finish is made again."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    folder, built = shared / name, shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            built.touch()
    return folder
