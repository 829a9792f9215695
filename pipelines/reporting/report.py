"""The run report: one HTML page (and its Markdown twin) per run, under ``reports/`` and in MLflow.

Why did the recommendations change on Tuesday? The page answers it in one place: whether the data
checks passed (with their warnings and Data Docs), each model beside popularity and the champion, the
gate's decision and its reasons, the champion's history, and plots of the metrics over the last runs,
training curves, the popularity of what was recommended and the daily volume.
"""

from __future__ import annotations

import datetime as dt
import logging
from html import escape
from pathlib import Path
from typing import Any

from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.io import write_text_atomic
from pipelines.reporting.charts import bar_chart, line_chart, to_svg
from pipelines.reporting.record import collect_run_record
from pipelines.reporting.summary import lift_interval, safety_stops
from pipelines.scoring.recommendations import POPULARITY_FALLBACK
from pipelines.validation.checks import describe

log = logging.getLogger(__name__)


def report_paths(config: PipelineConfig, ds: str) -> dict[str, Path]:
    return {"html": config.layout.run_report(ds, "html"), "markdown": config.layout.run_report(ds, "md")}


def write_run_report(config: PipelineConfig, ds: str, run_started: dt.datetime | None = None) -> dict[str, Any]:
    """Collect, render, write both files atomically, log them to MLflow; return the paths and the outcome."""
    report = collect_run_record(config, ds, run_started)
    paths = report_paths(config, ds)
    sections, figures = build_sections(report), build_figures(report)
    write_text_atomic(paths["html"], render_html(report, sections, figures))
    write_text_atomic(paths["markdown"], render_markdown(report, sections))
    outcome = headline(report)
    (log.info if report["stopped_at"] is None else log.warning)("run report %s: %s; %s", ds, outcome, paths["html"])
    for line in _reasons(report):
        log.warning("run report %s: %s", ds, line)
    mlflow_run = _log_to_mlflow(config, ds, paths, report, figures)
    return {"ds": ds, "html": str(paths["html"]), "markdown": str(paths["markdown"]), "headline": outcome,
            "stopped_at": report["stopped_at"], "mlflow_run_id": mlflow_run}


def headline(report: dict[str, Any]) -> str:
    decision = report["decision"]
    if report["stopped_at"] in lake.DATA_CHECKS:
        return f"stopped at the {report['stopped_at']} data checks; champion unchanged"
    if report["stopped_at"] in ("evaluation", "decision"):
        return f"stopped before the gate ({report['stopped_at']} not reached); champion unchanged"
    return decision.get("verdict", "no decision")


def build_sections(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) tables shared by the HTML and the Markdown."""
    sections = [("Data checks", ["check", "result", "details"], _check_rows(report))]
    evaluation = report["evaluation"]
    if evaluation:
        k = evaluation["k"]
        rows = [["popularity", "-", *_metrics(evaluation["popularity"], k), "-", ""]]
        rows += [[c["model"], c["version"], *_metrics(c["test"], k), f"{c.get('epochs_run')} ({c.get('stopped_reason')})",
                  lift_interval(c)] for c in evaluation["candidates"]]
        champion = evaluation.get("champion") or {}
        if champion:
            measured = _metrics(champion["test"], k) if "test" in champion else [
                "not compared" if champion.get("not_comparable") else "error",
                champion.get("not_comparable") or champion.get("error", "")]
            rows.append([f"champion ({champion.get('model')})", champion["version"], *measured, "re-scored today", ""])
        sections.append((f"Models (test split, {evaluation['num_test_users']} users)",
                         ["model", "version", f"HR@{k}", f"NDCG@{k}", "epochs", "lift over popularity (interval)"],
                         rows))
    decision = report["decision"]
    if decision:
        control = decision.get("control", {})
        rows = [["verdict", decision.get("verdict", "")], ["champion version", str(decision.get("champion_version"))],
                ["mode", f"{control.get('mode', 'auto')} by {control.get('who', '?')} {control.get('reason', '')}"]]
        rows += [["reason", reason] for reason in decision.get("reasons", [])]
        rows += [["note", note] for note in decision.get("notes", [])]
        rows += [["gate said", reason] for reason in decision.get("gate_reasons", []) if reason not in
                 decision.get("reasons", [])]
        sections.append(("Promotion gate", ["", ""], rows))
    bias = report["recommendations"]
    if bias.get("buckets"):
        sections.append(("Recommendations", ["measure", "value"], [
            ["model version", ", ".join(bias.get("model_versions", [])) + (
                " (no champion yet: the window's most popular items)" if POPULARITY_FALLBACK in
                bias.get("model_versions", []) else "")],
            ["catalogue coverage", f"{bias['recommended_items']} of {bias['items']} items ({bias['coverage']:.1%})"],
            ["share in the most popular 1/" + str(bias["buckets"]) + " of items", f"{bias['top_bucket_share']:.1%}"],
            ["rows", str(bias["rows"])]]))
    if report.get("audiences"):
        sections.append(("Campaign audiences", ["campaign", "users"],
                         [[name, str(users)] for name, users in report["audiences"].items()]))
    rules = report.get("rules") or {}
    if rules:
        counts = rules.get("counts", {})
        rows = [[f"removed for everyone: {name}", str(count)] for name, count in rules.get("removed", {}).items()]
        rows += [["purchased items held back (user, item pairs)", str(counts.get("purchased_removed", 0))],
                 ["items skipped by the per-category cap", str(counts.get("capped", 0))],
                 ["items placed because a campaign required them", str(counts.get("required_added", 0))],
                 [f"users with fewer than {rules.get('top_k')} items", str(counts.get("short_lists", 0))],
                 ["users with no item at all", str(counts.get("empty_lists", 0))]]
        rows += [["note", note] for note in rules.get("notes", [])]
        sections.append(("Business rules" + ("" if rules.get("catalog") else " (no catalog for the day)"),
                         ["rule", "items"], rows))
    lift = report.get("lift") or {}
    if lift.get("campaigns"):
        sections.append((f"Audience lift (held-out day {lift['holdout_day']}, {lift['users_with_history']} users "
                         "with history before it)",
                         ["campaign", "size", "audience responded", "random", "most active", "lift over random",
                          "lift over most active"],
                         [[name, str(row["size"]), f"{row['model_rate']:.1%}", f"{row['random_rate']:.1%}",
                           f"{row['most_active_rate']:.1%}", _times(row["lift_over_random"]),
                           _times(row["lift_over_most_active"])] for name, row in lift["campaigns"].items()]))
    elif lift.get("skipped"):
        sections.append(("Audience lift", ["", ""], [["not measured", lift["skipped"]]]))
    publication = report.get("publication") or {}
    if publication:
        database = publication.get("database") or {}
        tables = database.get("tables", {})
        recs = publication["recommendations"]
        rows = [["serving database", f"{database.get('target', 'none (publishing.enabled off)')} "
                                     f"schema {database.get('schema', '-')}"],
                ["customers", str(publication["customers"])],
                ["rows left out", f"anonymous visitors {recs['anonymous']}, quarantined (id too long) "
                                  f"{recs['customer_id_too_long']}, suppressed {recs.get('suppressed', 0)}, "
                                  f"unmapped {recs['unmapped']}"]]
        rows += [[f"table {name}", ", ".join(f"{k} {v}" for k, v in counts.items())] for name, counts in tables.items()]
        if database.get("later_day_published"):
            rows.append(["current day", f"{database['later_day_published']} stays current (this is an earlier day)"])
        if publication.get("exports"):
            rows.append(["JSON Lines export", publication["exports"]["path"]])
        sections.append(("Published", ["", ""], rows))
    privacy = report.get("privacy") or {}
    if privacy.get("requests") or privacy.get("rows_suppressed"):
        sections.append(("Privacy (make erasure-status)", ["", ""], [
            ["erasure requests", str(privacy["requests"])], ["open", str(privacy["open"])],
            [f"overdue (open over {privacy['deadline_hours']} h)", ", ".join(privacy["overdue"]) or "none"],
            ["rows of suppressed people dropped at ingest this day", str(privacy["rows_suppressed"])]]))
    sections.append(("Champion history", ["at", "action", "version", "previous", "who", "reason"],
                     [[e["at"], e["action"], e["version"], str(e.get("previous_version")), e.get("who", ""),
                       e.get("reason", "")] for e in reversed(report["history"])]))
    return sections


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def build_figures(report: dict[str, Any]) -> dict[str, Any]:
    """{file stem: matplotlib Figure} of the report's charts, in page order."""
    trend, volume, curves, bias = report["trend"], report["volume"], report["curves"], report["recommendations"]
    figures = {"ndcg_trend": line_chart("NDCG@k over the last nightly runs", trend["days"], trend["series"], "NDCG"),
               "daily_volume": bar_chart("Events per day", volume["days"], {"accepted": volume["accepted"],
                                                                           "quarantined": volume["quarantined"]},
                                         "events")}
    ok_curves = {name: c for name, c in curves.items() if isinstance(c, dict)}
    if ok_curves:
        epochs = max((len(c["train_loss"]) for c in ok_curves.values()), default=0)
        labels = [str(e) for e in range(1, epochs + 1)]
        figures["train_loss"] = line_chart("Training loss per epoch", labels,
                                           {n: c["train_loss"] for n, c in ok_curves.items()}, "loss")
        val = {n: next((v for k, v in c.items() if k.startswith("val_")), []) for n, c in ok_curves.items()}
        figures["val_ndcg"] = line_chart("Validation NDCG per epoch", labels, val, "NDCG")
    if bias.get("buckets"):
        labels = [f"{i + 1}" for i in range(bias["buckets"])]
        figures["popularity_bias"] = bar_chart(
            "Recommendations per item-popularity bucket (1 = most popular)", labels,
            {"recommended": bias["bucket_shares"], "uniform": [1 / bias["buckets"]] * bias["buckets"]}, "share")
    return figures


def render_html(report: dict[str, Any], sections, figures: dict[str, Any]) -> str:
    body = [f"<h1>Nightly run {escape(report['ds'])}</h1>", f"<p><b>{escape(headline(report))}</b></p>"]
    body += [f"<p class=reason>{escape(line)}</p>" for line in _reasons(report)]
    for title, header, rows in sections:
        body.append(f"<h2>{escape(title)}</h2><table><tr>{''.join(f'<th>{escape(h)}</th>' for h in header)}</tr>")
        body += ["<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in rows]
        body.append("</table>")
    body.append("<h2>Plots</h2>" + "".join(f"<div class=plot>{to_svg(figure, name)}</div>"
                                     for name, figure in figures.items()))
    body.append(f"<p>MLflow store: {escape(report['tracking_uri'])}</p>")
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}.reason{color:#a00}"
             ".plot svg{max-width:100%;height:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Run {escape(report['ds'])}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def render_markdown(report: dict[str, Any], sections) -> str:
    lines = [f"# Nightly run {report['ds']}", "", f"**{headline(report)}**", ""]
    lines += [f"- {line}" for line in _reasons(report)]
    for title, header, rows in sections:
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |" for row in rows]
    lines += ["", "Plots: see the HTML report beside this file.", ""]
    return "\n".join(lines)


def _check_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for stage in lake.DATA_CHECKS:
        record = report["checks"][stage]
        if not record:
            rows.append([stage, "not run", "no record this run"])
            continue
        result = "passed" if record.get("success") else "FAILED"
        counts = (f"{record.get('rows_in')} in, {record.get('rows_accepted')} accepted, "
                  f"{record.get('rows_quarantined')} quarantined {record.get('reasons') or ''}"
                  + (f", {record['blank_lines']} blank lines" if record.get("blank_lines") else "")
                  if stage == "raw_events" and "rows_in" in record else "")
        docs = record.get("data_docs_path") or ""
        rows.append([stage, result, f"{counts} data docs: {docs}".strip()])
        drift = record.get("drift") or {}
        rows += [[f"{stage} drift", "ok" if c["success"] else c["severity"].upper(), describe(c)]
                 for c in drift.get("checks", [])]
        rows += [[stage, "FAIL", line] for line in record.get("failures", [])]
        rows += [[stage, "warn", line] for line in record.get("warnings", [])]
    return rows


def _reasons(report: dict[str, Any]) -> list[str]:
    stage = report["stopped_at"]
    if stage in lake.DATA_CHECKS:
        return report["checks"][stage].get("failures") or [f"no {stage} check record was written this run; see the task log"]
    reasons = report["decision"].get("reasons", []) if report["decision"] else []
    return reasons + safety_stops(report["evaluation"] or {})


def _metrics(test: dict[str, float], k: int) -> list[str]:
    return [f"{test[f'hr_at_{k}']:.4f}", f"{test[f'ndcg_at_{k}']:.4f}"]


def _cell(value: Any) -> str:
    text = escape(str(value))
    if text.startswith("/") and text.endswith(".html"):
        return f"<a href='file://{text}'>{text}</a>"
    return text


def _log_to_mlflow(config: PipelineConfig, ds: str, paths: dict[str, Path], report: dict[str, Any],
                   figures: dict[str, Any]) -> str | None:
    """One ``report-<ds>`` run per day (reused by reruns) holding the pages and the check records."""
    try:
        import mlflow

        from pipelines.registry.store import configure_mlflow, find_finished_run

        experiment_id = configure_mlflow(config)
        tags = {"pipeline.ds": ds, "pipeline.kind": "report"}
        previous = find_finished_run(experiment_id, tags)
        with mlflow.start_run(run_id=previous.info.run_id if previous else None, run_name=f"report-{ds}",
                              tags=None if previous else tags) as run:
            mlflow.set_tag("pipeline.outcome", headline(report)[:5000])
            for path in paths.values():
                mlflow.log_artifact(str(path), artifact_path="report")
            for name, figure in figures.items():
                mlflow.log_figure(figure, f"report/figures/{name}.png")
            for campaign, row in (report.get("lift") or {}).get("campaigns", {}).items():
                name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in campaign)
                mlflow.log_metrics({f"audience_lift_over_random.{name}": row["lift_over_random"] or 0.0,
                                    f"audience_lift_over_most_active.{name}": row["lift_over_most_active"] or 0.0,
                                    f"audience_response_rate.{name}": row["model_rate"]})
            for stage, record in report["checks"].items():
                if record:
                    mlflow.log_dict(record, f"data_checks/{stage}.json")
                    mlflow.log_metrics({f"{stage}_check_failures": len(record.get("failures", [])),
                                        f"{stage}_check_warnings": len(record.get("warnings", []))})
        return run.info.run_id
    except Exception as err:  # noqa: BLE001 - the page on disk is the report; MLflow is a copy
        log.warning("report %s: not logged to MLflow (%s); the files are at %s", ds, err, paths["html"])
        return None
