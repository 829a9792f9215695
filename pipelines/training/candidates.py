"""Train one candidate model for a day: an MLflow run with its metrics, the model and a registered version.

Training is idempotent on its inputs: a run is identified by the day, the model, a digest of the
training data and a digest of the hyper-parameters. A rerun with the same inputs finds the finished
MLflow run and model version instead of training and registering a duplicate; a rerun after the
data was fixed has a new data digest and trains afresh.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.features.store import load_feature_partition
from pipelines.io import fault_point, write_json_atomic
from pipelines.registry.lineage import digest, lineage_tags, training_dataset
from pipelines.registry.store import close_crashed_runs, configure_mlflow, find_finished_run
from pipelines.training.splits import day_splits

log = logging.getLogger(__name__)
TAG_DS, TAG_MODEL, TAG_DATA, TAG_PARAMS = "pipeline.ds", "pipeline.model", "pipeline.data_digest", "pipeline.params_digest"


def model_params(config: PipelineConfig, model_name: str) -> dict[str, Any]:
    """The configured hyper-parameters; models that embed users get the feature job's bucket count."""
    from pipelines.models import model_class

    params = dict(config.training.model_params.get(model_name, {}))
    if "num_user_buckets" in model_class(model_name).DEFAULT_PARAMS:
        params.setdefault("num_user_buckets", config.features.user_buckets)
    return params


def train_candidate(config: PipelineConfig, ds: str, model_name: str) -> dict[str, Any]:
    """Train ``model_name`` on the day's features, log it to MLflow and register a model version."""
    features = load_feature_partition(config.layout.features, ds)
    params = model_params(config, model_name)
    train_settings = _train_settings(config, model_name, features.num_sequences)
    identity = {TAG_DS: ds, TAG_MODEL: model_name, TAG_DATA: features.digest,
                TAG_PARAMS: digest({"model": params, "train": train_settings})}
    experiment_id = configure_mlflow(config)
    previous = find_finished_run(experiment_id, identity)
    if previous is not None and previous.data.tags.get("pipeline.candidate"):
        log.info("%s for %s: same data and parameters already trained in run %s; reusing it",
                 model_name, ds, previous.info.run_id)
        candidate = json.loads(previous.data.tags["pipeline.candidate"])
    else:
        for run_id in close_crashed_runs(experiment_id, identity):
            log.warning("%s for %s: run %s was killed before it ended; marked FAILED, training again",
                        model_name, ds, run_id)
        candidate = _train_and_log(config, features, model_name, params, train_settings, identity)
    write_json_atomic(config.layout.candidate_record(ds, model_name), candidate)
    return candidate


def _train_and_log(config, features, model_name, params, train_settings, identity) -> dict[str, Any]:
    import mlflow

    from pipelines.models.metrics import evaluate_split
    from pipelines.models.training import score_items, train_model

    splits = day_splits(config, features)
    k = config.evaluation.k
    lineage = lineage_tags(features)
    with mlflow.start_run(run_name=f"{model_name}-{features.ds}", tags={**identity, **lineage}) as run:
        mlflow.log_input(training_dataset(features), context="training")
        _log_data_checks(config, features.ds)
        mlflow.log_params({"model": model_name, **params, **train_settings,
                           "num_items": features.num_items, "num_users": splits.num_users})
        result = train_model(model_name, features.num_items, params, _train_config(train_settings), splits,
                             on_epoch_end=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch))
        test = evaluate_split(lambda batch: score_items(result.model, batch, config.scoring.batch_size),
                              splits, "test", k=k)
        mlflow.log_metrics({f"test_{name}": value for name, value in test.items()})
        mlflow.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.train_seconds})
        mlflow.set_tag("pipeline.stopped_reason", result.stopped_reason)
        model_info = mlflow.keras.log_model(result.model, name="model", pip_requirements=serving_requirements())
        version = mlflow.register_model(model_info.model_uri, config.promotion.registered_model,
                                        tags={**identity, **lineage, "pipeline.gate": "pending",
                                              "pipeline.test_ndcg": f"{test[f'ndcg_at_{k}']:.6f}"})
        fault_point("candidate-registered")  # killed here, a retry labels this version a crashed attempt
        candidate = {"model": model_name, "ds": features.ds, "run_id": run.info.run_id,
                     "model_uri": model_info.model_uri, "version": str(version.version),
                     "test": test, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                     "train_seconds": round(result.train_seconds, 2), "stopped_reason": result.stopped_reason,
                     "data_digest": features.digest}
        mlflow.set_tag("pipeline.candidate", json.dumps(candidate, sort_keys=True))
    log.info("%s for %s: test %s after %s epochs (%s); model version %s", model_name, features.ds, test,
             result.epochs_run, result.stopped_reason, version.version)
    return candidate


def _train_config(train_settings: dict[str, Any]):
    from pipelines.models.training import TrainConfig

    return TrainConfig(**{k: v for k, v in train_settings.items() if k in TrainConfig.__dataclass_fields__})


def serving_requirements() -> list[str]:
    """What loading a logged model needs, pinned to the versions that trained it.

    Given explicitly, MLflow skips inferring them, which loads the model again in a subprocess
    (about 15 s a model on 2 cores) and guesses from the imports it sees.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("keras", "tensorflow", "numpy")]


def _log_data_checks(config: PipelineConfig, ds: str) -> None:
    """The day's data-check records beside the model, so the run shows what it was trained on."""
    import mlflow

    for record in (config.layout.check_record(ds, check) for check in lake.DATA_CHECKS):
        if not fs.exists(record):
            continue
        mlflow.log_artifact(str(record), artifact_path="data_checks")
        summary = lake.read_record(record)
        mlflow.set_tag(f"pipeline.checks.{record.stem}",
                       f"success={summary.get('success')} warnings={len(summary.get('warnings', []))}")


def _train_settings(config: PipelineConfig, model_name: str, users: int) -> dict[str, Any]:
    """What the model is trained with (logged, and part of its identity): streaming, which shuffles within
    chunks, counts, so a day trained in chunks is not taken for one trained whole."""
    training = config.training
    return {"epochs": training.epochs_for(model_name), "batch_size": training.batch_size, "learning_rate": training.learning_rate,
            "patience": training.patience, "time_budget_seconds": training.time_budget_seconds,
            "seed": training.seed, "k": config.evaluation.k,
            **({"device": "gpu", "mixed_precision": training.mixed_precision} if training.device == "gpu" else {}),
            **({"stream_chunk_users": training.stream_chunk_users} if training.streams(users) else {})}


