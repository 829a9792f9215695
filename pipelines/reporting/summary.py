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
             *_recommendation_lines(summary.get("recommendations", {}), summary.get("audiences", {})),
             *rule_lines(summary.get("rules", {})), *lift_lines(summary.get("lift", {})),
             *publication_lines(summary.get("publication", {})), *privacy_lines(summary.get("privacy", {})), "",
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
    lines.append("  epochs: " + ", ".join(f"{c['model']} {c.get('epochs_run')} ({c.get('stopped_reason')})"
                                          for c in evaluation["candidates"]))
    lines += [f"  warn: {line}" for line in safety_stops(evaluation)]
    return lines


def safety_stops(evaluation: dict[str, Any]) -> list[str]:
    """A line per candidate that the safety time budget stopped: its quality then depends on the machine."""
    return [f"{c['model']} was stopped by the safety time budget (training.time_budget_seconds) after "
            f"{c.get('epochs_run')} epochs and {c.get('train_seconds')} s, before its epochs or patience ended it: "
            "its quality now depends on this machine's speed; raise the budget or lower training.model_epochs"
            for c in evaluation.get("candidates", []) if c.get("stopped_reason") == "time_budget"]


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


def rule_lines(rules: dict[str, Any]) -> list[str]:
    """What the business rules took out of the day's lists (``scoring.rules``, ``scoring.campaigns``)."""
    if not rules:
        return []
    removed = ", ".join(f"{name} {count}" for name, count in rules.get("removed", {}).items() if count) or "none"
    counts = rules.get("counts", {})
    lines = [f"Rules: items removed for everyone: {removed}; purchased items held back "
             f"{counts.get('purchased_removed', 0)}, capped by category {counts.get('capped', 0)}, added as "
             f"required {counts.get('required_added', 0)}"]
    if counts.get("short_lists"):
        lines.append(f"  {counts['short_lists']} users got fewer than {rules.get('top_k', 'k')} items "
                     f"({counts.get('empty_lists', 0)} none at all): the rules left them too few eligible items")
    return lines + [f"  note: {note}" for note in rules.get("notes", [])]


def lift_lines(lift: dict[str, Any]) -> list[str]:
    """Each campaign's audience against a random and a most-active audience, on the held-out day."""
    campaigns = lift.get("campaigns", {})
    if not campaigns:
        return [f"Audience lift: not measured ({lift['skipped']})"] if lift.get("skipped") else []
    lines = [f"Audience lift (audiences from the history before {lift['holdout_day']}, members who touched the "
             "campaign's items that day):"]
    for name, row in campaigns.items():
        lines.append(f"  {name}: {row['model_rate']:.1%} of {row['size']} vs random {row['random_rate']:.1%} "
                     f"(lift {_ratio(row['lift_over_random'])}), most active {row['most_active_rate']:.1%} "
                     f"(lift {_ratio(row['lift_over_most_active'])})")
    return lines


def publication_lines(publication: dict[str, Any]) -> list[str]:
    if not publication:
        return ["Published: nothing for this day (the publish task did not run or failed)"]
    recs, database = publication["recommendations"], publication.get("database")
    where = (f"{database['target']} schema {database['schema']}" if database else "no database (publishing.enabled off)")
    tables = (database or {}).get("tables", {}).get("recommendations", {})
    return [f"Published: {recs['published']} recommendation rows for {publication['customers']} customers to "
            f"{where} ({tables.get('inserted', 0)} new, {tables.get('updated', 0)} changed, "
            f"{tables.get('unchanged', 0)} unchanged, {tables.get('deleted', 0)} removed); left out: "
            f"{recs['anonymous']} rows of anonymous visitors, {recs['customer_id_too_long']} quarantined, "
            f"{recs.get('suppressed', 0)} suppressed, {recs['unmapped']} unmapped"]


def privacy_lines(privacy: dict[str, Any]) -> list[str]:
    if not privacy or not (privacy.get("requests") or privacy.get("rows_suppressed")):
        return []
    overdue = privacy["overdue"]
    return [f"Privacy: {privacy['requests']} erasure requests, {privacy['open']} open, {len(overdue)} overdue "
            f"(deadline {privacy['deadline_hours']} h){': ' + ', '.join(overdue[:5]) if overdue else ''}; "
            f"{privacy['rows_suppressed']} rows of suppressed people dropped at ingest today (make erasure-status)"]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
