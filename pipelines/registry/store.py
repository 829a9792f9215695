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
