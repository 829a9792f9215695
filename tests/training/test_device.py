"""``training.device`` and the ``gpu`` extra, checked on the CPU: what a GPU worker gets, and what a wrong one says."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from pipelines.config import REPO_ROOT, load_config

GPU_CHECK = "from pipelines.training.device import use_device; print(use_device('gpu'))"


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def _has_jax_gpu() -> bool:
    return _python("import jax; assert jax.devices('gpu')").returncode == 0


def test_the_cpu_keeps_tensorflow():
    done = _python("from pipelines.training.device import use_device; import keras; "
                   "print(use_device('cpu'), keras.backend.backend())", KERAS_BACKEND="")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'keras_backend': 'tensorflow'" in done.stdout and done.stdout.strip().endswith("tensorflow")


def test_a_worker_without_a_usable_gpu_refuses_with_what_to_do():
    if _has_jax_gpu():
        pytest.skip("this machine has a GPU: the next test covers it")
    done = _python(GPU_CHECK)
    assert done.returncode != 0
    assert "DeviceError: training.device is gpu" in done.stderr
    assert "make setup GPU=1" in done.stderr or "run the training tasks on the GPU worker" in done.stderr


@pytest.mark.gpu
def test_a_gpu_worker_trains_on_jax_in_bfloat16():
    if not _has_jax_gpu():
        pytest.skip("no GPU visible to JAX here (make setup GPU=1 on a GPU host)")
    done = _python(GPU_CHECK + "; import keras; print(keras.backend.backend(), keras.mixed_precision.global_policy().name)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("jax mixed_bfloat16")


def test_keras_already_imported_on_another_backend_is_an_error_not_a_silent_cpu_run():
    done = _python("import keras; from pipelines.training.device import use_device; use_device('gpu')",
                   KERAS_BACKEND="tensorflow")
    assert done.returncode != 0 and "already imported in this process with 'tensorflow'" in done.stderr


def test_the_gpu_extra_is_locked_with_cuda_wheels_for_linux():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("jax[cuda12]") for dep in project["optional-dependencies"]["gpu"])
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    ours = packages["clickstream-recs"]
    assert {d["name"] for d in ours["optional-dependencies"]["gpu"]} == {"jax"}
    assert "cuda12" in next(d for d in ours["optional-dependencies"]["gpu"])["extra"]
    assert any(w["url"].endswith("py3-none-any.whl") for w in packages["jax"]["wheels"])
    for name in ("jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "nvidia-cudnn-cu12"):
        wheels = [w["url"] for w in packages[name].get("wheels", [])]
        assert any("manylinux" in w and "x86_64" in w and ("cp311" in w or "py3-none" in w) for w in wheels), name
    # the CPU install is unchanged: the extra adds packages, it does not move the base ones
    assert "jax" not in {d["name"] for d in ours["dependencies"]}


def test_make_setup_gpu_syncs_the_extra_and_the_gpu_worker_sets_the_device():
    plan = subprocess.run(["make", "-n", "setup", "GPU=1"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert "--extra cluster --extra gpu" in plan.stdout, plan.stdout[-2000:]
    import yaml

    worker = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())["services"]["airflow-worker-gpu"]
    assert worker["environment"]["PIPELINE__TRAINING__DEVICE"] == "gpu"
    assert worker["environment"]["KERAS_BACKEND"] == "jax"
    assert worker["build"]["args"]["EXTRAS"] == "cluster gpu"
    env = {"PIPELINE__TRAINING__DEVICE": "gpu"}
    assert load_config(env=env).training.device == "gpu" and load_config(env={}).training.device == "cpu"
