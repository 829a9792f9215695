"""The stack's Celery workers import the tasks' libraries once, and the tasks they fork still work.

``pipelines.local.worker_preload`` is named in Celery's ``imports`` (``AIRFLOW__CELERY__EXTRA_CELERY_CONFIG``)
by ``make stack-up`` and ``docker/compose.yaml``; Celery imports it in the worker before the pool, and
Airflow's supervisor forks each task's process from there. The stack tier runs every task that way;
these tests check the pieces without a stack.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import yaml

from pipelines.config import REPO_ROOT, load_config
from pipelines.local import worker_preload
from pipelines.local.stack import PRELOAD_MODULE, Ports, stack_environment

EXTRA = "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"


def _run(code: str, env: dict[str, str] | None = None, timeout: int = 240) -> dict:
    """What ``code`` prints last (JSON) in a new Python process of the repository."""
    import os

    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_both_stacks_name_the_preload_module_in_celerys_imports(tmp_path):
    config = load_config({"paths": {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake")}})
    local = json.loads(stack_environment(config, Ports(), base={})[EXTRA])
    composed = json.loads(yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())["x-pipeline-env"][EXTRA])
    assert local == composed == {"imports": [PRELOAD_MODULE]}
    assert PRELOAD_MODULE == worker_preload.__name__


def test_airflow_hands_the_imports_to_the_workers_celery_app():
    config = _run("import json\nfrom airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG as c\n"
                  "print(json.dumps(c.get('imports')))", env={EXTRA: json.dumps({"imports": [PRELOAD_MODULE]})})
    assert config == [PRELOAD_MODULE]


def test_the_preload_loads_libraries_only_never_the_pipelines_code():
    tree = ast.parse((REPO_ROOT / "pipelines" / "local" / "worker_preload.py").read_text())
    imported = {node.module if isinstance(node, ast.ImportFrom) else alias.name for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
    assert not any(name.startswith("pipelines") for name in imported), imported
    assert not any(name.startswith("pipelines") for name in worker_preload.LIBRARIES)
    loaded = _run(f"import json, sys\nimport {PRELOAD_MODULE}\n"
                  "print(json.dumps([sorted(m for m in sys.modules if m.startswith('pipelines')),"
                  " [m for m in ('keras', 'mlflow', 'great_expectations') if m in sys.modules]]))")
    assert loaded == [sorted(["pipelines", "pipelines.local", PRELOAD_MODULE]), ["keras", "mlflow", "great_expectations"]]


def test_a_task_forked_after_the_preload_trains_and_predicts_twice():
    # As a worker's pool runs tasks one after another: each in a process forked from the preloaded one.
    code = f"""
import json, os
import {PRELOAD_MODULE}
results = []
for attempt in range(2):
    pid = os.fork()
    if pid == 0:
        import numpy as np
        import keras
        keras.utils.set_random_seed(attempt)
        model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        x = np.random.rand(512, 8).astype("float32")
        y = x.sum(axis=1, keepdims=True)
        first = model.evaluate(x, y, verbose=0)
        model.fit(x, y, epochs=20, batch_size=64, verbose=0)
        os._exit(0 if model.evaluate(x, y, verbose=0) < first / 4 else 3)
    results.append(os.waitpid(pid, 0)[1])
print(json.dumps(results))
"""
    assert _run(code, env={"KERAS_BACKEND": "tensorflow"}, timeout=300) == [0, 0]  # exit 0: learnt, no hang
