"""The run summary a person reads at a glance, built from what the tasks recorded in the lake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.io import partition_path, write_json_atomic


def collect_run_summary(config: PipelineConfig, ds: str, stage_seconds: dict[str, float]) -> dict[str, Any]:
    """Gather counts, metrics, the gate's decision and output paths for ``ds`` into one dict."""
    layout = config.layout
    checks = partition_path(layout.lake_dir / "checks", ds)
    evaluations = partition_path(layout.evaluations, ds)
    summary = {
        "ds": ds,
        "raw_events": _read(checks / "raw_events.json"),
        "features": _read(partition_path(layout.features, ds) / "_stats.json"),
        "feature_checks": _read(checks / "features.json"),
        "evaluation": _read(evaluations / "evaluation.json"),
        "decision": _read(evaluations / "decision.json"),
        "outputs": {"recommendations": str(partition_path(layout.recommendations, ds)),
                    "audiences": str(partition_path(layout.audiences, ds)),
                    "quarantine": str(partition_path(layout.quarantine, ds)),
                    "features": str(partition_path(layout.features, ds)),
                    "data_docs": str(layout.gx_dir)},
        "recommendations": _recommendations(partition_path(layout.recommendations, ds)),
        "audiences": audience_sizes(partition_path(layout.audiences, ds)),
        "stage_seconds": stage_seconds,
        "tracking_uri": config.tracking_uri,
        "report": str(layout.reports_dir / f"run-{ds}.html"),
        "summary_file": str(layout.reports_dir / f"run-{ds}.json"),
    }
    write_json_atomic(layout.reports_dir / f"run-{ds}.json", summary)
    return summary


def format_run_summary(summary: dict[str, Any]) -> str:
    """Render the summary as plain text for the terminal."""
    raw, feats = summary["raw_events"], summary["features"]
    reasons = ", ".join(f"{name} {count}" for name, count in sorted(raw.get("reasons", {}).items()))
    checks = [*raw.get("warnings", []), *summary["feature_checks"].get("warnings", [])]
    failures = [*raw.get("failures", []), *summary["feature_checks"].get("failures", [])]
    lines = [f"Nightly run for {summary['ds']}", "",
             f"Data (day {summary['ds']})",
             f"  events in {raw.get('rows_in', '?'):>9}   accepted {raw.get('rows_accepted', '?')}   "
             f"quarantined {raw.get('rows_quarantined', '?')}" + (f" ({reasons})" if reasons else ""),
             f"Features (trailing window {feats.get('window_start', '?')} .. {feats.get('window_end', '?')}, "
             f"{len(feats.get('partitions_read', []))} days read)",
             f"  events {feats.get('events_after_dedup', '?')} after dropping {feats.get('duplicates_dropped', '?')} "
             f"duplicates   sessions {feats.get('sessions', '?')}",
             f"  users {feats.get('users', '?')} ({feats.get('users_with_sequences', '?')} with sequences)   "
             f"items {feats.get('items', '?')} ({feats.get('new_items', '?')} new)",
             f"  data checks: {'passed' if raw.get('success') and summary['feature_checks'].get('success') else 'FAILED'}"
             f", {len(failures)} failure(s), {len(checks)} warning(s)",
             *[f"    fail: {line[:200]}" for line in failures], *[f"    warn: {line[:200]}" for line in checks],
             "", *_metric_lines(summary["evaluation"]), "", *_decision_lines(summary["decision"]),
             *_recommendation_lines(summary.get("recommendations", {}), summary.get("audiences", {})), "",
             "Outputs"]
    lines += [f"  {name:<16} {path}" for name, path in summary["outputs"].items()]
    lines += ["", "Wall time per stage (s)"]
    lines += [f"  {stage:<32} {seconds:8.1f}" for stage, seconds in summary["stage_seconds"].items()]
    lines += ["", "Look closer",
              "  make airflow-ui   Airflow at http://localhost:8080 (runs, task logs, backfills)",
              f"  make mlflow-ui    MLflow at http://localhost:5000 (store: {summary['tracking_uri']})",
              "  make rollback REASON='...'   move the champion back to the previous approved version",
              "", f"Summary saved to {summary['summary_file']}", f"Report: {summary['report']}"]
    return "\n".join(lines)


def _metric_lines(evaluation: dict[str, Any]) -> list[str]:
    if not evaluation:
        return ["Models: no evaluation recorded (the run stopped earlier; see the task log)"]
    k = evaluation["k"]
    rows = [("popularity", "-", evaluation["popularity"])]
    rows += [(c["model"], c["version"], c["test"]) for c in evaluation["candidates"]]
    champion = evaluation.get("champion")
    if champion and "test" in champion:
        rows.append((f"champion ({champion.get('model')})", champion["version"], champion["test"]))
    lines = [f"Models (test split, ranking all items, {evaluation['num_test_users']} users)",
             f"  {'model':<22} {'version':>7} {f'HR@{k}':>8} {f'NDCG@{k}':>8}"]
    for name, version, test in rows:
        lines.append(f"  {name:<22} {version:>7} {test[f'hr_at_{k}']:8.4f} {test[f'ndcg_at_{k}']:8.4f}")
    return lines


def _decision_lines(decision: dict[str, Any]) -> list[str]:
    if not decision:
        return ["Gate: no decision recorded"]
    control = decision.get("control") or {}
    lines = [f"Gate: {decision['verdict']}", f"  champion version: {decision.get('champion_version')}"
             f"   (mode {control.get('mode', 'auto')}, by {control.get('who', '?')})"]
    return lines + [f"  reason: {reason}" for reason in decision.get("reasons", [])]


def _recommendations(folder: Path) -> dict[str, Any]:
    """Rows, users and the model versions that wrote the day's recommendations ({} if none were written)."""
    import pyarrow.parquet as pq

    from pipelines import columns as C

    if not (folder / "part-00000.parquet").exists():
        return {}
    table = pq.read_table(folder, columns=[C.USER_KEY, C.MODEL_VERSION])
    return {"rows": table.num_rows, "users": len(table.column(C.USER_KEY).unique()),
            "model_versions": sorted(table.column(C.MODEL_VERSION).unique().to_pylist())}


def audience_sizes(folder: Path) -> dict[str, int]:
    """{campaign: users in its audience} of the day ({} if none were written)."""
    import pyarrow.parquet as pq

    from pipelines import columns as C

    if not (folder / "part-00000.parquet").exists():
        return {}
    campaigns = pq.read_table(folder, columns=[C.CAMPAIGN]).column(C.CAMPAIGN).value_counts().to_pylist()
    return {row["values"]: row["counts"] for row in sorted(campaigns, key=lambda row: row["values"])}


def _recommendation_lines(recommendations: dict[str, Any], audiences: dict[str, int]) -> list[str]:
    from pipelines.scoring import POPULARITY_FALLBACK

    if not recommendations:
        return ["Recommendations: none written for this day"]
    versions = recommendations["model_versions"]
    by = ("the window's popularity (no champion yet, scoring.without_champion: popularity)"
          if versions == [POPULARITY_FALLBACK] else f"model version {', '.join(versions)}")
    lines = [f"Recommendations: {recommendations['rows']} rows for {recommendations['users']} users, by {by}"]
    if audiences:
        lines.append(f"Audiences: {len(audiences)} campaigns, "
                     + ", ".join(f"{name} {users}" for name, users in audiences.items()) + " users")
    else:
        lines.append("Audiences: none (no campaign events in the window, or no champion yet)")
    return lines


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}

