"""Train one candidate model for a day, and evaluate every candidate beside popularity and the champion.

Training is idempotent on its inputs: a run is identified by the day, the model, a digest of the
training data and a digest of the hyper-parameters. A rerun with the same inputs finds the finished
MLflow run and model version instead of training and registering a duplicate; a rerun after the
data was fixed has a new data digest and trains afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.feature_store import FeaturePartition, load_feature_partition
from pipelines.io import partition_path, write_json_atomic
from pipelines.tracking import configure_mlflow, find_finished_run

log = logging.getLogger(__name__)
TAG_DS, TAG_MODEL, TAG_DATA, TAG_PARAMS = "pipeline.ds", "pipeline.model", "pipeline.data_digest", "pipeline.params_digest"


def build_day_splits(config: PipelineConfig, features: FeaturePartition):
    """Leave-one-out splits of the day's sequences (last item test, the one before validation)."""
    from pipelines.models.data import build_splits

    sequences = features.sequences
    return build_splits(sequences.column(C.ITEM_SEQ).combine_chunks(),
                        sequences.column(C.USER_BUCKET).to_numpy().astype(np.int32),
                        features.num_items, config.features.max_seq_len)


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
    train_settings = _train_settings(config)
    identity = {TAG_DS: ds, TAG_MODEL: model_name, TAG_DATA: features.digest,
                TAG_PARAMS: _digest({"model": params, "train": train_settings})}
    experiment_id = configure_mlflow(config)
    previous = find_finished_run(experiment_id, identity)
    if previous is not None and previous.data.tags.get("pipeline.candidate"):
        log.info("%s for %s: same data and parameters already trained in run %s; reusing it",
                 model_name, ds, previous.info.run_id)
        candidate = json.loads(previous.data.tags["pipeline.candidate"])
    else:
        candidate = _train_and_log(config, features, model_name, params, train_settings, identity)
    write_json_atomic(partition_path(config.layout.evaluations, ds) / "candidates" / f"{model_name}.json",
                      candidate)
    return candidate


def _train_and_log(config, features, model_name, params, train_settings, identity) -> dict[str, Any]:
    import mlflow

    from pipelines.evaluation import evaluate_full_ranking
    from pipelines.models.training import TrainConfig, score_items, train_model

    splits = build_day_splits(config, features)
    k = config.evaluation.k
    lineage = lineage_tags(features)
    with mlflow.start_run(run_name=f"{model_name}-{features.ds}", tags={**identity, **lineage}) as run:
        mlflow.log_input(training_dataset(features), context="training")
        _log_data_checks(config, features.ds)
        mlflow.log_params({"model": model_name, **params, **train_settings,
                           "num_items": features.num_items, "num_users": len(splits.test_targets)})
        result = train_model(model_name, features.num_items, params, TrainConfig(**train_settings), splits,
                             on_epoch_end=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch))
        test = evaluate_full_ranking(lambda batch: score_items(result.model, batch, config.scoring.batch_size),
                                     splits.inputs("test"), splits.test_targets, k=k)
        mlflow.log_metrics({f"test_{name}": value for name, value in test.items()})
        mlflow.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.train_seconds})
        mlflow.set_tag("pipeline.stopped_reason", result.stopped_reason)
        model_info = mlflow.keras.log_model(result.model, name="model")
        version = mlflow.register_model(model_info.model_uri, config.promotion.registered_model,
                                        tags={**identity, **lineage, "pipeline.gate": "pending",
                                              "pipeline.test_ndcg": f"{test[f'ndcg_at_{k}']:.6f}"})
        candidate = {"model": model_name, "ds": features.ds, "run_id": run.info.run_id,
                     "model_uri": model_info.model_uri, "version": str(version.version),
                     "test": test, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                     "train_seconds": round(result.train_seconds, 2), "stopped_reason": result.stopped_reason,
                     "data_digest": features.digest}
        mlflow.set_tag("pipeline.candidate", json.dumps(candidate, sort_keys=True))
    log.info("%s for %s: test %s after %s epochs (%s); model version %s", model_name, features.ds, test,
             result.epochs_run, result.stopped_reason, version.version)
    return candidate


def lineage_tags(features: FeaturePartition) -> dict[str, str]:
    """What a model version was made from: the day, the window, feature and vocabulary versions, the code."""
    from pipelines.registry import code_version
    from pipelines.tasks import day_interval

    start, end = day_interval(features.ds)
    stats = features.stats
    settings = {"params": stats.get("params"), "clean_signature": stats.get("clean_signature")}
    return {"pipeline.data_interval": f"{start.isoformat()}/{end.isoformat()}",
            "pipeline.training_window": f"{stats.get('window_start')}..{stats.get('window_end')}",
            "pipeline.feature_version": f"{features.ds}:{_digest(settings)}",
            "pipeline.vocab_version": str(stats.get("vocab_version", features.ds)),
            "pipeline.dataset_digest": training_dataset(features).digest,
            "pipeline.code_version": code_version()}


def training_dataset(features: FeaturePartition):
    """The day's features as an ``mlflow.data`` dataset whose digest is the content digest of the data."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    return MetaDataset(resolve_dataset_source(features.path.as_uri()), name=f"features-{features.ds}",
                       digest=features.digest)


def _log_data_checks(config: PipelineConfig, ds: str) -> None:
    """The day's data-check records beside the model, so the run shows what it was trained on."""
    import mlflow

    folder = partition_path(config.layout.checks, ds)
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        mlflow.log_artifact(str(record), artifact_path="data_checks")
        summary = json.loads(record.read_text())
        mlflow.set_tag(f"pipeline.checks.{record.stem}",
                       f"success={summary.get('success')} warnings={len(summary.get('warnings', []))}")


def evaluate_candidates(config: PipelineConfig, ds: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Popularity and the current champion on the same test split as the candidates."""
    from pipelines.evaluation import evaluate_full_ranking, popularity_scorer, popularity_scores

    started = time.perf_counter()
    features = load_feature_partition(config.layout.features, ds)
    splits = build_day_splits(config, features)
    k = config.evaluation.k
    popularity = popularity_scores(splits.train_sequences, features.num_items)
    baseline = evaluate_full_ranking(popularity_scorer(popularity), splits.inputs("test"), splits.test_targets, k=k)
    champion = _score_champion(config, splits, features.num_items)
    evaluation = {"ds": ds, "k": k, "metric": f"ndcg_at_{k}", "num_test_users": int(len(splits.test_targets)),
                  "popularity": baseline, "champion": champion,
                  "candidates": sorted(candidates, key=lambda c: c["model"]),
                  "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(partition_path(config.layout.evaluations, ds) / "evaluation.json", evaluation)
    log.info("evaluation %s: popularity %s; champion %s; candidates %s", ds, baseline,
             champion and (champion.get("test") or champion.get("error")), {c["model"]: c["test"] for c in candidates})
    return evaluation


def _score_champion(config: PipelineConfig, splits, num_items: int) -> dict[str, Any] | None:
    """Re-score the current champion on today's split, or None when there is no champion yet."""
    from pipelines.evaluation import evaluate_full_ranking
    from pipelines.models.training import score_items
    from pipelines.promotion import current_champion, load_registered_model

    configure_mlflow(config)
    champion = current_champion(config)
    if champion is None:
        return None
    try:
        model = load_registered_model(champion)
    except Exception as err:  # noqa: BLE001 - a broken champion must not stop the day; the gate fails closed
        log.error("champion version %s cannot be loaded: %s", champion.version, err)
        return {"version": str(champion.version), "model": champion.tags.get(TAG_MODEL), "error": str(err)}

    def score(batch):  # the champion may predate today's new items: they score -inf for it
        scores = score_items(model, batch, config.scoring.batch_size)
        padded = np.full((scores.shape[0], num_items + 1), -np.inf, dtype=np.float32)
        padded[:, : scores.shape[1]] = scores[:, : num_items + 1]
        return padded

    test = evaluate_full_ranking(score, splits.inputs("test"), splits.test_targets, k=config.evaluation.k)
    return {"version": str(champion.version), "model": champion.tags.get(TAG_MODEL), "test": test}


def _train_settings(config: PipelineConfig) -> dict[str, Any]:
    training = config.training
    return {"epochs": training.epochs, "batch_size": training.batch_size, "learning_rate": training.learning_rate,
            "patience": training.patience, "time_budget_seconds": training.time_budget_seconds,
            "seed": training.seed, "k": config.evaluation.k}


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
