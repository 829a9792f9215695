"""The run's record: everything the summary and the report show, gathered once from the lake and MLflow.

``collect_run_record`` is the one collector; ``summary`` renders it for the terminal, ``report`` as
HTML and Markdown. With ``run_started`` (the report task of a DAG run) only records written since
the run started count: a record from an earlier run of the same day (say last night's evaluation,
when tonight's run stopped at validation) is left out and its stage reported as not reached.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.dates import trailing_days
from pipelines.io import write_json_atomic
from pipelines.lake import PART_FILE, partition_path, read_record

log = logging.getLogger(__name__)


def privacy_summary(config: PipelineConfig, raw_check: dict[str, Any]) -> dict[str, Any]:
    """Erasure requests (open, overdue) and the day's rows of suppressed people dropped at ingest; no ids."""
    from pipelines.privacy.status import erasure_status

    status = erasure_status(config)
    return {"requests": len(status["requests"]), "open": len(status["open"]), "overdue": status["overdue"],
            "deadline_hours": status["deadline_hours"], "rows_suppressed": raw_check.get("rows_suppressed", 0)}


def collect_run_record(config: PipelineConfig, ds: str, run_started: dt.datetime | None = None,
                       stage_seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Checks, feature stats, metrics, the gate's decision, outputs, history and trends of ``ds``."""
    layout = config.layout
    checks = {check: read_record(layout.check_record(ds, check), run_started) for check in lake.DATA_CHECKS}
    evaluation = read_record(layout.evaluation_record(ds), run_started)
    decision = read_record(layout.decision_record(ds), run_started)
    written = lake.is_fresh(partition_path(layout.recommendations, ds) / PART_FILE, run_started)
    return {
        "ds": ds, "checks": checks, "feature_stats": read_record(layout.feature_stats(ds), run_started),
        "evaluation": evaluation, "decision": decision,
        "stopped_at": stopped_at(checks, evaluation, decision, written),
        "recommendations": recommendation_profile(config, ds) if written else {},
        "audiences": audience_sizes(config, ds) if written else {},
        "rules": read_record(layout.rules_record(ds), run_started) if written else {},
        "lift": read_record(layout.lift_record(ds), run_started) if written else {},
        "publication": read_record(layout.publication_record(ds), run_started),
        "privacy": privacy_summary(config, checks.get(lake.RAW_EVENTS_CHECK, {})),
        "history": _champion_history(config), "trend": metric_trend(config, ds),
        "volume": daily_volume(config, ds), "curves": training_curves(config, evaluation),
        "outputs": {"recommendations": str(partition_path(layout.recommendations, ds)),
                    "audiences": str(partition_path(layout.audiences, ds)),
                    "exports": str(partition_path(layout.activation_exports, ds)),
                    "quarantine": str(partition_path(layout.quarantine, ds)),
                    "features": str(partition_path(layout.features, ds)),
                    "data_docs": str(layout.gx_dir)},
        "stage_seconds": dict(stage_seconds or {}),
        "tracking_uri": config.tracking_uri,
        "report": str(layout.run_report(ds, "html")), "summary_file": str(layout.run_report(ds, "json")),
    }


def write_run_record(config: PipelineConfig, record: dict[str, Any]) -> None:
    """Keep the record beside the report (``reports/run-<ds>.json``)."""
    write_json_atomic(config.layout.run_report(record["ds"], "json"), record)


def stopped_at(checks: dict[str, dict], evaluation: dict, decision: dict, recommendations_written: bool) -> str | None:
    """The first stage without a passing record this run, or None when the run went through."""
    for check in lake.DATA_CHECKS:
        if not checks[check].get("success"):
            return check
    if not evaluation:
        return "evaluation"
    if not decision:
        return "decision"
    return None if recommendations_written else "recommendations"


def metric_trend(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """NDCG@k of each model, popularity and the re-scored champion over the last nightly runs."""
    days, series = [], {}
    for day in [*trailing_days(ds, config.report.history_runs - 1), ds]:
        evaluation = read_record(config.layout.evaluation_record(day))
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
    """Accepted and quarantined raw events of ``ds`` and the trailing days that have a check record."""
    days, accepted, quarantined = [], [], []
    for day in [*trailing_days(ds, config.checks.history_days), ds]:
        record = read_record(config.layout.check_record(day, lake.RAW_EVENTS_CHECK))
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

        from pipelines.registry.store import configure_mlflow

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


def recommendation_profile(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Rows, users and model versions of the day's recommendations, catalogue coverage and popularity bias."""
    from pipelines.features.store import load_feature_partition

    table = fs.read_parquet(partition_path(config.layout.recommendations, ds),
                            columns=[C.USER_KEY, C.ITEM_IDX, C.MODEL_VERSION])
    profile = {"rows": int(table.num_rows), "users": len(table.column(C.USER_KEY).unique()),
               "model_versions": sorted(table.column(C.MODEL_VERSION).unique().to_pylist())}
    try:
        features = load_feature_partition(config.layout.features, ds)
    except FileNotFoundError as err:  # recommendations without features: counts only
        log.warning("report: no popularity profile of the recommendations (%s)", err)
        return profile
    seqs = features.sequences.column(C.ITEM_SEQ).combine_chunks().values.to_numpy(zero_copy_only=False)
    counts = np.bincount(seqs, minlength=features.num_items + 1)[1:]  # [num_items]; item_idx is 1-based
    order = np.argsort(-counts, kind="stable")  # most popular first
    buckets = config.report.popularity_buckets
    bucket_of = np.empty_like(order)
    bucket_of[order] = np.arange(len(order)) * buckets // max(len(order), 1)  # 0 = most popular
    recommended = table.column(C.ITEM_IDX).to_numpy()
    shares = np.bincount(bucket_of[recommended - 1], minlength=buckets) / max(len(recommended), 1)
    distinct = len(np.unique(recommended))
    return {**profile, "items": int(features.num_items), "recommended_items": int(distinct),
            "coverage": round(distinct / max(features.num_items, 1), 4), "buckets": buckets,
            "bucket_shares": [round(float(s), 4) for s in shares], "top_bucket_share": round(float(shares[0]), 4)}


def audience_sizes(config: PipelineConfig, ds: str) -> dict[str, int]:
    """{campaign: users in its audience} of the day ({} if none were written)."""
    folder = partition_path(config.layout.audiences, ds)
    if not fs.exists(folder / PART_FILE):
        return {}
    campaigns = fs.read_parquet(folder, columns=[C.CAMPAIGN]).column(C.CAMPAIGN).value_counts().to_pylist()
    return {row["values"]: row["counts"] for row in sorted(campaigns, key=lambda row: row["values"])}


def _champion_history(config: PipelineConfig) -> list[dict[str, Any]]:
    from pipelines.registry.champion import read_history

    return read_history(config)[-12:]
