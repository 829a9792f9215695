"""docker/compose.yaml and ``make stack-up`` describe the same stack: the same services, the same settings."""

from __future__ import annotations

import yaml

from pipelines.config import REPO_ROOT, load_config
from pipelines.local.stack import Ports, Stack, services, stack_environment

COMPOSE = REPO_ROOT / "docker" / "compose.yaml"
PREFIXES = ("AIRFLOW", "PIPELINE__MLFLOW", "KERAS_BACKEND")
MACHINE_LOCAL = {"AIRFLOW_HOME"}  # a path of this machine's var/ locally, a volume in compose


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def local_stack(tmp_path) -> Stack:
    config = load_config({"paths": {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake")}})
    return Stack(config, Ports(), stack_environment(config, Ports(), base={}))


def test_the_same_services_run_in_compose_and_on_one_machine(tmp_path):
    composed = set(compose()["services"]) - {"airflow-init"}  # stack-up's bootstrap step, a one-shot there
    assert composed == {service.name for service in services(local_stack(tmp_path))}


def test_the_services_get_the_same_settings(tmp_path):
    local = {key for key in local_stack(tmp_path).env if key.startswith(PREFIXES)} - MACHINE_LOCAL
    composed = {key for key in compose()["x-pipeline-env"] if key.startswith(PREFIXES)} - MACHINE_LOCAL
    assert local - composed == set(), "set in make stack-up, missing in docker/compose.yaml"
    assert composed - local == set(), "set in docker/compose.yaml, missing in make stack-up"


def test_compose_comes_up_in_order_and_restarts_what_dies():
    spec = compose()["services"]
    assert spec["postgres"]["healthcheck"] and spec["redis"]["healthcheck"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker", "airflow-worker-gpu"):
        needs = spec[name]["depends_on"]
        assert needs["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert needs["postgres"] == {"condition": "service_healthy"}, name
        assert spec[name]["restart"] == "unless-stopped", name
    assert spec["airflow-init"]["restart"] == "no"


def test_the_gpu_worker_serves_the_training_queue_on_a_reserved_gpu():
    config = load_config()
    worker = compose()["services"]["airflow-worker-gpu"]
    assert f"--queues {config.airflow.gpu_queue}" in worker["command"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "--queues default" in compose()["services"]["airflow-worker"]["command"]


def test_mlflow_serves_its_artifacts_and_accepts_its_service_name():
    command = compose()["services"]["mlflow"]["command"]
    assert "--serve-artifacts" in command and "mlflow:5000" in command.split("--allowed-hosts")[1]
    images = {spec.get("image", "") for spec in compose()["services"].values()}
    assert not any(image.startswith("minio/") for image in images)  # minio/minio:latest is no longer published
