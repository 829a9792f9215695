"""The run summary a person reads at a glance in the terminal: the run's record (``record``) as text."""

from __future__ import annotations

from typing import Any

from pipelines.scoring.recommendations import POPULARITY_FALLBACK


def format_run_summary(summary: dict[str, Any]) -> str:
    """Render the run's record (``record.collect_run_record``) as plain text for the terminal."""
    raw, feature_checks, feats = summary["checks"]["raw_events"], summary["checks"]["features"], summary["feature_stats"]
    reasons = ", ".join(f"{name} {count}" for name, count in sorted(raw.get("reasons", {}).items()))
    checks = [*raw.get("warnings", []), *feature_checks.get("warnings", [])]
    failures = [*raw.get("failures", []), *feature_checks.get("failures", [])]
    lines = [f"Nightly run for {summary['ds']}", "",
             f"Data (day {summary['ds']})",
             f"  events in {raw.get('rows_in', '?'):>9}   accepted {raw.get('rows_accepted', '?')}   "
             f"quarantined {raw.get('rows_quarantined', '?')}" + (f" ({reasons})" if reasons else "")
             + (f"   blank lines {raw['blank_lines']}" if raw.get("blank_lines") else ""),
             f"Features (trailing window {feats.get('window_start', '?')} .. {feats.get('window_end', '?')}, "
             f"{len(feats.get('partitions_read', []))} days read)",
             f"  events {feats.get('events_after_dedup', '?')} after dropping {feats.get('duplicates_dropped', '?')} "
             f"duplicates   sessions {feats.get('sessions', '?')}",
             f"  users {feats.get('users', '?')} ({feats.get('users_with_sequences', '?')} with sequences)   "
             f"items {feats.get('items', '?')} ({feats.get('new_items', '?')} new)",
             f"  data checks: {'passed' if raw.get('success') and feature_checks.get('success') else 'FAILED'}"
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
    rows = [("popularity", "-", evaluation["popularity"], "")]
    rows += [(c["model"], c["version"], c["test"], lift_interval(c)) for c in evaluation["candidates"]]
    champion = evaluation.get("champion")
    if champion and "test" in champion:
        rows.append((f"champion ({champion.get('model')})", champion["version"], champion["test"], ""))
    lines = [f"Models (test split, ranking all items, {evaluation['num_test_users']} users)",
             f"  {'model':<22} {'version':>7} {f'HR@{k}':>8} {f'NDCG@{k}':>8}   lift over popularity (interval)"]
    for name, version, test, lift in rows:
        lines.append(f"  {name:<22} {version:>7} {test[f'hr_at_{k}']:8.4f} {test[f'ndcg_at_{k}']:8.4f}   {lift}".rstrip())
    if champion and champion.get("not_comparable"):
        lines.append(f"  champion v{champion['version']} not compared: {champion['not_comparable']}")
    return lines


def lift_interval(candidate: dict[str, Any]) -> str:
    """``+12.3% (95%: +4.1% .. +20.2%)`` from the candidate's bootstrap evidence ('' without it)."""
    lift = (candidate.get("evidence") or {}).get("popularity")
    if not lift:
        return ""
    return f"{_pct(lift['relative'])} ({lift['confidence']:.0%}: {_pct(lift['relative_low'])} .. " \
           f"{_pct(lift['relative_high'])})"


def _pct(value: float) -> str:
    return f"{value:+.1%}" if value != float("inf") else "+inf"


def _decision_lines(decision: dict[str, Any]) -> list[str]:
    if not decision:
        return ["Gate: no decision recorded"]
    control = decision.get("control") or {}
    lines = [f"Gate: {decision['verdict']}", f"  champion version: {decision.get('champion_version')}"
             f"   (mode {control.get('mode', 'auto')}, by {control.get('who', '?')})"]
    return lines + [f"  reason: {reason}" for reason in decision.get("reasons", [])] + [
        f"  note: {note}" for note in decision.get("notes", [])]


def _recommendation_lines(recommendations: dict[str, Any], audiences: dict[str, int]) -> list[str]:
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
