"""The promotion gate: the ``champion`` alias moves only on evidence.

A candidate becomes champion when (1) the day's data checks passed, (2) it beats popularity on the
same test split by the configured relative margin and (3) it is not worse than the current champion,
re-scored on the same split, beyond the configured tolerance. The metric comparisons are MLflow's own
``validate_evaluation_results`` with ``MetricThreshold``s. Missing evidence (no data-check record, a
champion that cannot be loaded) keeps the current champion: the gate fails closed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.io import partition_path

log = logging.getLogger(__name__)
CHECKS = ("raw_events", "features")


def current_champion(config: PipelineConfig):
    """The model version behind the champion alias, or None when there is none yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(config.promotion.registered_model,
                                                         config.promotion.champion_alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def load_registered_model(version):
    """Load a registered Keras model version (the model classes must be registered first)."""
    import mlflow

    import pipelines.models  # noqa: F401 - registers the custom Keras classes for deserialisation

    return mlflow.keras.load_model(f"models:/{version.name}/{version.version}")


def promote_champion(config: PipelineConfig, ds: str, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Decide, move the alias if the gate passes, and record the reasons where people look."""
    from pipelines.tracking import configure_mlflow

    configure_mlflow(config)
    metric = evaluation["metric"]
    best = max(evaluation["candidates"], key=lambda c: c["test"][metric])
    reasons = _check_data(config, ds) + _check_metrics(config, best, evaluation)
    champion = current_champion(config)
    decision = {"ds": ds, "metric": metric, "candidate": {k: best[k] for k in ("model", "version", "run_id")},
                "candidate_value": best["test"][metric], "popularity_value": evaluation["popularity"][metric],
                "previous_champion_version": champion.version if champion else None, "reasons": reasons}
    if reasons:
        decision.update(promoted=False, champion_version=decision["previous_champion_version"],
                        verdict="rejected: " + "; ".join(reasons))
    elif champion is not None and str(champion.version) == str(best["version"]):
        decision.update(promoted=False, champion_version=str(champion.version),
                        verdict=f"unchanged: version {champion.version} is already champion")
    else:
        _move_alias(config, best, ds)
        decision.update(promoted=True, champion_version=str(best["version"]),
                        verdict=f"promoted {best['model']} version {best['version']}")
    _record(config, best, decision)
    return decision


def _check_data(config: PipelineConfig, ds: str) -> list[str]:
    reasons = []
    for check in CHECKS:
        record = partition_path(config.layout.lake_dir / "checks", ds) / f"{check}.json"
        if not record.exists():
            reasons.append(f"no {check} data-check record at {record} (fail closed)")
        elif not json.loads(record.read_text()).get("success"):
            reasons.append(f"{check} data checks failed (see {record})")
    return reasons


def _check_metrics(config: PipelineConfig, best: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    import mlflow
    from mlflow.models import EvaluationResult, MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    metric, margin = evaluation["metric"], config.promotion.min_lift_over_popularity
    candidate = EvaluationResult(metrics={metric: best["test"][metric]}, artifacts={})
    popularity = EvaluationResult(metrics={metric: evaluation["popularity"][metric]}, artifacts={})
    gates = [("popularity", {metric: MetricThreshold(
        greater_is_better=True,
        **({"min_relative_change": float(margin)} if margin > 0 else {"min_absolute_change": 1e-9}))}, popularity)]
    champion = evaluation.get("champion")
    if champion and "error" in champion:
        return [f"champion version {champion['version']} could not be re-scored ({champion['error']}); "
                "keeping it (fail closed)"]
    if champion:
        floor = champion["test"][metric] - config.promotion.champion_tolerance
        gates.append((f"champion v{champion['version']}",
                      {metric: MetricThreshold(threshold=floor, greater_is_better=True)}, None))
    reasons = []
    for name, thresholds, baseline in gates:
        try:
            mlflow.validate_evaluation_results(thresholds, candidate, baseline)
        except ModelValidationFailedException as err:
            reasons.append(f"against {name}: {str(err.message).strip()}")
    return reasons


def _move_alias(config: PipelineConfig, best: dict[str, Any], ds: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(config.promotion.registered_model, config.promotion.champion_alias,
                                      best["version"])
    client.set_model_version_tag(config.promotion.registered_model, best["version"], "pipeline.promoted_ds", ds)


def _record(config: PipelineConfig, best: dict[str, Any], decision: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(best["run_id"], f"pipeline.gate.{decision['ds']}", decision["verdict"][:5000])
    client.set_model_version_tag(config.promotion.registered_model, best["version"], "pipeline.gate",
                                 decision["verdict"][:5000])
    client.log_text(best["run_id"], json.dumps(decision, indent=2, default=str), f"gate/{decision['ds']}.json")
    (log.info if decision["promoted"] else log.warning)("promotion gate %s: %s", decision["ds"], decision["verdict"])
