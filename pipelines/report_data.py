"""What the run report shows, gathered from the lake and the MLflow store (no rendering here).

A run's records are the ones written since the run started: a record from an earlier run of the same
day (say the evaluation of last night's successful run, when tonight's stopped at validation) is left
out and the stage is reported as not reached.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.io import partition_path
from pipelines.summary import audience_sizes
from pipelines.validation.drift import trailing_days

log = logging.getLogger(__name__)
STAGES = ("raw_events", "features", "evaluation", "decision", "recommendations")


def collect_report(config: PipelineConfig, ds: str, run_started: dt.datetime | None = None) -> dict[str, Any]:
    layout = config.layout
    checks, evaluations = partition_path(layout.checks, ds), partition_path(layout.evaluations, ds)
    records = {"raw_events": _read(checks / "raw_events.json", run_started),
               "features": _read(checks / "features.json", run_started),
               "evaluation": _read(evaluations / "evaluation.json", run_started),
               "decision": _read(evaluations / "decision.json", run_started)}
    recommendations = partition_path(layout.recommendations, ds)
    fresh = _fresh(recommendations / "part-00000.parquet", run_started)
    report = {"ds": ds, **records, "stopped_at": _stopped_at(records, fresh),
              "recommendations": recommendation_bias(config, ds) if fresh else {},
              "audiences": audience_sizes(partition_path(layout.audiences, ds)) if fresh else {},
              "history": _champion_history(config), "trend": metric_trend(config, ds),
              "volume": daily_volume(config, ds), "curves": training_curves(config, records["evaluation"]),
              "tracking_uri": config.tracking_uri}
    return report


def _stopped_at(records: dict[str, dict], recommendations_written: bool) -> str | None:
    """The first stage without a passing record this run, or None when the run went through."""
    for stage in ("raw_events", "features"):
        if not records[stage].get("success"):
            return stage
    for stage in ("evaluation", "decision"):
        if not records[stage]:
            return stage
    return None if recommendations_written else "recommendations"


def metric_trend(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """NDCG@k of each model, popularity and the re-scored champion over the last nightly runs."""
    days, series = [], {}
    for day in [*trailing_days(ds, config.report.history_runs - 1), ds]:
        evaluation = _read(partition_path(config.layout.evaluations, day) / "evaluation.json")
        if not evaluation:
            continue
        metric, index = evaluation["metric"], len(days)
        days.append(day)
        rows = {"popularity": evaluation["popularity"], **{c["model"]: c["test"] for c in evaluation["candidates"]}}
        if (evaluation.get("champion") or {}).get("test"):
            rows["champion"] = evaluation["champion"]["test"]
        for name, test in rows.items():
            series.setdefault(name, [None] * index).append(test.get(metric))
        for points in series.values():
            points.extend([None] * (index + 1 - len(points)))
    return {"days": days, "series": series}


def daily_volume(config: PipelineConfig, ds: str) -> dict[str, Any]:
    days, accepted, quarantined = [], [], []
    for day in [*trailing_days(ds, config.checks.history_days), ds]:
        record = _read(partition_path(config.layout.checks, day) / "raw_events.json")
        if record.get("rows_in") is not None:
            days.append(day)
            accepted.append(record.get("rows_accepted", 0))
            quarantined.append(record.get("rows_quarantined", 0))
    return {"days": days, "accepted": accepted, "quarantined": quarantined}


def training_curves(config: PipelineConfig, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch training loss and validation NDCG@k of the day's candidates, from their MLflow runs."""
    if not evaluation:
        return {}
    try:
        from mlflow import MlflowClient

        from pipelines.tracking import configure_mlflow

        configure_mlflow(config)
        client, curves = MlflowClient(), {}
        for candidate in evaluation["candidates"]:
            curves[candidate["model"]] = {
                key: [m.value for m in sorted(client.get_metric_history(candidate["run_id"], key),
                                              key=lambda m: m.step)]
                for key in ("train_loss", f"val_ndcg_at_{evaluation['k']}")}
        return curves
    except Exception as err:  # noqa: BLE001 - the report is still written without the curves
        log.warning("report: no training curves (%s)", err)
        return {"error": str(err)}


def recommendation_bias(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Catalogue coverage and how the recommended items spread over the items' popularity buckets."""
    import pyarrow.parquet as pq

    from pipelines.feature_store import load_feature_partition

    features = load_feature_partition(config.layout.features, ds)
    seqs = features.sequences.column(C.ITEM_SEQ).combine_chunks().values.to_numpy(zero_copy_only=False)
    counts = np.bincount(seqs, minlength=features.num_items + 1)[1:]  # [num_items]; item_idx is 1-based
    order = np.argsort(-counts, kind="stable")  # most popular first
    buckets = config.report.popularity_buckets
    bucket_of = np.empty_like(order)
    bucket_of[order] = np.arange(len(order)) * buckets // max(len(order), 1)  # 0 = most popular
    table = pq.read_table(partition_path(config.layout.recommendations, ds), columns=[C.ITEM_IDX, C.MODEL_VERSION])
    recommended = table.column(C.ITEM_IDX).to_numpy()
    versions = sorted(set(table.column(C.MODEL_VERSION).unique().to_pylist()))
    shares = np.bincount(bucket_of[recommended - 1], minlength=buckets) / max(len(recommended), 1)
    return {"items": int(features.num_items), "recommended_items": int(len(np.unique(recommended))),
            "coverage": round(len(np.unique(recommended)) / max(features.num_items, 1), 4),
            "rows": int(len(recommended)), "bucket_shares": [round(float(s), 4) for s in shares],
            "top_bucket_share": round(float(shares[0]), 4), "buckets": buckets, "model_versions": versions}


def _champion_history(config: PipelineConfig) -> list[dict[str, Any]]:
    from pipelines.registry import read_history

    return read_history(config)[-12:]


def _read(path: Path, run_started: dt.datetime | None = None) -> dict[str, Any]:
    if not _fresh(path, run_started):
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"success": False, "failures": [f"{path}: unreadable record"]}


def _fresh(path: Path, run_started: dt.datetime | None) -> bool:
    if not path.exists():
        return False
    return run_started is None or path.stat().st_mtime >= run_started.timestamp() - 1
