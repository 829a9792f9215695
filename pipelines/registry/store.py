"""MLflow set-up and look-ups shared by training, promotion and scoring."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import PipelineConfig


def configure_mlflow(config: PipelineConfig) -> str:
    """Point MLflow at the configured store and make sure the nightly experiment exists.

    Returns the experiment id. With the embedded default the store is SQLite under ``var/`` and
    artifacts live next to it, so nothing but the filesystem is needed.
    """
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    experiment = mlflow.get_experiment_by_name(config.mlflow.experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    artifacts = None
    if not config.mlflow.tracking_uri:
        Path(config.layout.mlflow_dir).mkdir(parents=True, exist_ok=True)
        artifacts = (config.layout.mlflow_dir / "artifacts").as_uri()
    experiment_id = mlflow.create_experiment(config.mlflow.experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def find_finished_run(experiment_id: str, tags: dict[str, str]):
    """The newest FINISHED run carrying all ``tags``, or None."""
    import mlflow

    query = " and ".join(f"tags.{key} = '{value}'" for key, value in sorted(tags.items()))
    runs = mlflow.search_runs([experiment_id], filter_string=f"{query} and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return runs[0] if runs else None


def close_crashed_runs(experiment_id: str, tags: dict[str, str]) -> list[str]:
    """Mark FAILED the RUNNING runs carrying ``tags``: attempts whose process was killed before they ended.

    Called before a fresh attempt of the same work, so the UI never shows a dead run as running; the
    caller makes sure no live attempt exists (the DAG runs one training task per model and day).
    """
    import mlflow
    from mlflow import MlflowClient

    query = " and ".join(f"tags.{key} = '{value}'" for key, value in sorted(tags.items()))
    runs = mlflow.search_runs([experiment_id], filter_string=f"{query} and attributes.status = 'RUNNING'",
                              output_format="list")
    client = MlflowClient()
    for run in runs:
        client.set_tag(run.info.run_id, "pipeline.crashed", "killed before it ended; a later attempt replaced it")
        client.set_terminated(run.info.run_id, status="FAILED")
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):  # registered, then killed
            client.set_model_version_tag(version.name, version.version, "pipeline.gate",
                                         "crashed attempt: never a candidate (its run was killed before it ended)")
    return [run.info.run_id for run in runs]
