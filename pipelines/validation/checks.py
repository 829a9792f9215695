"""Data checks with a severity: Great Expectations checkpoints whose results say what to stop on.

Every expectation carries ``meta = {"check": <name>, "severity": "warn" | "fail"}``. A failed ``fail``
check stops the DAG before training; a failed ``warn`` check is logged and shown in the run report.
Each table is validated by its own checkpoint (GX feeds one dataframe per run), the run named after
the day so that a rerun replaces the day's Data Docs page instead of adding one.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from pipelines.dates import day_interval

log = logging.getLogger(__name__)
WARN, FAIL = "warn", "fail"
SEVERITIES = (WARN, FAIL)


class DataCheckError(ValueError):
    """A check of severity ``fail`` did not pass; training must not start on this day's data.

    The data will not change by retrying, so the DAG fails the task at once instead of retrying it.
    """


def with_severity(expectation, check: str, severity: str, note: str = ""):
    """Tag an expectation with its check name, severity and a note for the report (how the band was set)."""
    if severity not in SEVERITIES:
        raise ValueError(f"check {check!r}: severity {severity!r} is not one of {list(SEVERITIES)}")
    expectation.meta = {"check": check, "severity": severity, **({"note": note} if note else {})}
    return expectation


def run_checks(gx_dir: Path, name: str, ds: str, frames: dict[str, pd.DataFrame],
               expectations: dict[str, list]) -> dict[str, Any]:
    """Validate each frame against its expectations; return the outcomes, verdict and Data Docs pages."""
    context = open_gx_context(gx_dir)
    outcomes, pages = [], {}
    run_time, _ = day_interval(ds)
    for table, frame in frames.items():
        validation, page = _run_table(context, f"{name}.{table}", frame, expectations[table], ds, run_time)
        outcomes += [_outcome(table, result) for result in validation.results]
        pages[table] = page
    return summarise(outcomes, pages)


def summarise(outcomes: list[dict[str, Any]], pages: dict[str, str]) -> dict[str, Any]:
    failures = [o for o in outcomes if not o["success"] and o["severity"] == FAIL]
    warnings = [o for o in outcomes if not o["success"] and o["severity"] == WARN]
    return {"success": not failures, "checks": outcomes, "failures": [describe(o) for o in failures],
            "warnings": [describe(o) for o in warnings], "data_docs": pages}


def describe(outcome: dict[str, Any]) -> str:
    """One line a person reads: which check, what was seen, what was expected."""
    band = []
    if outcome.get("min") is not None:
        band.append(f">= {_fmt(outcome['min'])}")
    if outcome.get("max") is not None:
        band.append(f"<= {_fmt(outcome['max'])}")
    where = f"{outcome['table']}.{outcome['column']}" if outcome.get("column") else outcome["table"]
    expected = f" (expected {' and '.join(band)})" if band else ""
    return f"{outcome['check']} [{outcome['severity']}]: {where} observed {_fmt(outcome.get('observed'))}{expected}"


def _run_table(context, name: str, frame: pd.DataFrame, expectations: list, ds: str, run_time: dt.datetime):
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    batch = _whole_frame_batch(_dataframe_asset(_pandas_source(context, name.split(".")[0]), name))
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=[e.copy() for e in expectations]))
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch,
                                                                                         suite=suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[definition], actions=[UpdateDataDocsAction(name="update_data_docs")],
        result_format="SUMMARY"))
    result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=ds, run_time=run_time))
    [(result_id, validation)] = result.run_results.items()
    return validation, data_docs_page(context, result_id)


def _outcome(table: str, result) -> dict[str, Any]:
    config = result.expectation_config
    meta, kwargs = config.meta or {}, config.kwargs
    raised = (result.exception_info or {}).get("raised_exception")
    observed = (result.result or {}).get("observed_value")
    if observed is None and "unexpected_percent" in (result.result or {}):
        observed = f"{result.result['unexpected_percent']:.2f}% unexpected"
    return {"table": table, "check": meta.get("check", config.type), "severity": meta.get("severity", FAIL),
            "expectation": config.type, "column": kwargs.get("column"), "success": bool(result.success),
            "observed": _plain(observed), "min": _plain(kwargs.get("min_value")),
            "max": _plain(kwargs.get("max_value")), "note": meta.get("note", ""),
            **({"error": str(result.exception_info.get("exception_message"))} if raised else {})}


def open_gx_context(gx_dir: Path):
    """The file-mode GX project under ``gx_dir`` (suites, results, Data Docs), quiet in task logs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
    return context


def data_docs_page(context, result_id) -> str:
    """Local path of the Data Docs page of one validation result (the site folder if it has none)."""
    sites = context.get_docs_sites_urls(resource_identifier=result_id)
    if not sites or not sites[0].get("site_url"):
        return str(Path(context.root_directory) / "uncommitted" / "data_docs")
    return unquote(urlparse(sites[0]["site_url"]).path)


def _pandas_source(context, name: str):
    try:
        return context.data_sources.get(name)
    except (KeyError, ValueError, LookupError):
        return context.data_sources.add_pandas(name)


def _dataframe_asset(source, name: str):
    try:
        return source.get_asset(name)
    except LookupError:
        return source.add_dataframe_asset(name)


def _whole_frame_batch(asset):
    try:
        return asset.get_batch_definition("whole_frame")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole_frame")


def _plain(value: Any) -> Any:
    """JSON-able: numpy scalars to Python numbers, anything else odd to text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
