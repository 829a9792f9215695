"""The third-party libraries the pipeline's tasks import, loaded once by each Celery worker at start.

A Celery worker runs every task in a process forked from it (Airflow's task supervisor forks on
Linux), so whatever the worker imported before forking is already in each task's process. Without
this, every task pays its imports again: Keras with TensorFlow about 3 s, Great Expectations 4 s,
MLflow 2 s on these machines (bytecode compiled), for 10 of a night's 11 tasks. The workers name this module in
Celery's ``imports`` setting (``AIRFLOW__CELERY__EXTRA_CELERY_CONFIG``, set by ``make stack-up``
and ``docker/compose.yaml``); Celery imports it in the worker's main process before it starts its
pool.

Only libraries are loaded, never ``pipelines`` itself: a change to the pipeline's code reaches the
next task without a worker restart, as before. Importing is all that happens here: no TensorFlow
op runs, no JAX or CUDA backend is initialised and no thread pool starts before the fork (each
task's process does that on first use), which is what keeps forking safe. Keras is loaded with the
backend of the worker's ``KERAS_BACKEND`` (``tensorflow``; ``jax`` on the GPU worker, which trains
with ``training.device: gpu``), so a run may not ask a worker for the other device
(``pipelines.training.device`` then fails at once and says which variable to set);
``tests/local/test_worker_preload.py`` trains a model in a process forked after this import.
"""

from __future__ import annotations

import importlib

# In dependency order; keras loads the backend named by KERAS_BACKEND (tensorflow, or jax on a GPU worker).
LIBRARIES = ("numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.dataset", "pyarrow.parquet",
             "sqlalchemy", "psycopg2", "mlflow", "mlflow.models", "great_expectations", "great_expectations.checkpoint",
             "great_expectations.expectations", "matplotlib.figure", "keras")


def preload(libraries: tuple[str, ...] = LIBRARIES) -> list[str]:
    """Import ``libraries``; returns their names. A missing one fails the worker's start, named."""
    for name in libraries:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"worker preload: {name} does not import ({err}); the worker's environment lacks "
                              f"what the tasks need: run make setup (or rebuild the image), then start the "
                              f"worker again") from err
    return list(libraries)


preload()
