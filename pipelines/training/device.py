"""Where a training task runs: ``training.device`` picks Keras's backend before Keras is imported.

``cpu`` (the default): TensorFlow on the CPU, as everywhere else in the pipeline. ``gpu``: Keras on
JAX with the worker's GPU (the ``gpu`` extra, ``make setup GPU=1``) and, with
``training.mixed_precision``, bfloat16 compute with float32 weights. Keras reads ``KERAS_BACKEND`` once,
at its first import, so ``use_device`` must run before anything imports Keras in the task's process.
The DAG file imports no Keras; a Celery worker of the stack has Keras loaded already, with its own
``KERAS_BACKEND`` (``pipelines.local.worker_preload``), so the device a run asks for must be the worker's.
A worker that cannot do what the config asks fails at once with what to do, never silently on the CPU.
"""

from __future__ import annotations

import os
import sys
from typing import Any

BACKENDS = {"cpu": "tensorflow", "gpu": "jax"}


class DeviceError(RuntimeError):
    """The worker cannot train on the configured ``training.device``."""


def use_device(device: str, mixed_precision: bool = True) -> dict[str, Any]:
    """Set Keras's backend for ``device`` (and its precision policy); what was chosen, for the run's params."""
    backend = BACKENDS[device]
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise DeviceError(
                f"training.device is {device}, which trains on Keras's {backend} backend, but Keras was already "
                f"imported in this process with {keras.backend.backend()!r}; set KERAS_BACKEND={backend} in the "
                "worker's environment (the gpu worker of docker/compose.yaml does), or call use_device first")
    os.environ["KERAS_BACKEND"] = backend
    chosen: dict[str, Any] = {"device": device, "keras_backend": backend}
    if device == "gpu":
        chosen["accelerators"] = _gpus()
        import keras

        policy = "mixed_bfloat16" if mixed_precision else "float32"
        keras.mixed_precision.set_global_policy(policy)
        chosen["precision"] = policy
    return chosen


def _gpus() -> list[str]:
    try:
        import jax
    except ImportError:
        raise DeviceError(
            "training.device is gpu but JAX is not installed on this worker: install the gpu extra (make setup "
            "GPU=1 on the GPU host, or the image built with EXTRAS=\"cluster gpu\"), or set training.device: cpu"
        ) from None
    try:
        devices = jax.devices("gpu")
    except RuntimeError as err:
        raise DeviceError(
            f"training.device is gpu but JAX sees no GPU on this worker ({str(err).splitlines()[0][:200]}); run the "
            "training tasks on the GPU worker (the gpu queue: airflow.gpu_queue) of a host with an NVIDIA driver, "
            "or set training.device: cpu") from None
    return [str(device) for device in devices]
