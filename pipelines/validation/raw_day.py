"""The ``validate_raw_events`` stage: one raw day's row checks with quarantine, then its drift checks.

The record (``checks/dt=<ds>/raw_events.json``) is written whatever the outcome, so the gate, the
summary and the report see why a day stopped. A day that was read and judged raises
``DataCheckError`` (retrying would not change it); a day that could not be read raises
``RawDataError`` (landing it and retrying may).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.dates import day_interval
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path
from pipelines.suppression import Suppressions
from pipelines.validation.checks import DataCheckError
from pipelines.validation.drift import check_raw_drift
from pipelines.validation.raw_events import RawDataError, validate_raw_events
from pipelines.validation.raw_events_suite import RawLimits

log = logging.getLogger(__name__)


def validate_raw_day(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Row checks with quarantine, then drift against the trailing days; the record is written either way."""
    layout = config.layout
    record_path = layout.check_record(ds, lake.RAW_EVENTS_CHECK)
    start, end = day_interval(ds)
    start -= dt.timedelta(days=config.validation.late_event_days)  # late events: see pipelines/features/cleaning.py
    try:
        result = validate_raw_events(
            raw_partition=partition_path(layout.raw_events, ds), ds=ds, interval_start=start, interval_end=end,
            validated_partition=partition_path(layout.validated_events, ds),
            quarantine_partition=partition_path(layout.quarantine, ds),
            gx_project_dir=layout.gx_dir, max_failure_rate=config.validation.max_failure_rate,
            limits=raw_limits(config),
            suppressions=Suppressions(layout.suppression_list, config.features.hash_key_env),
            chunk_rows=config.validation.chunk_rows, workers=config.validation.workers)
    except RawDataError as err:
        counts = err.result.to_dict() if err.result else {"ds": ds}
        write_json_atomic(record_path, {**counts, "success": False, "failures": [str(err)], "warnings": []})
        if err.result is not None:  # the day was read and judged: rerunning the task would not change it
            raise DataCheckError(str(err)) from err
        raise
    drift = check_raw_drift(config, ds)
    summary = {**result.to_dict(), "success": result.success and drift["success"], "drift": drift,
               "failures": drift["failures"], "warnings": drift["warnings"]}
    write_json_atomic(record_path, summary)
    log.info("raw events dt=%s: %s in = %s accepted + %s quarantined (%s rows of suppressed people dropped); "
             "data docs: %s", ds, result.rows_in, result.rows_accepted, result.rows_quarantined,
             result.rows_suppressed, result.data_docs_path)
    for warning in drift["warnings"]:
        log.warning("raw events dt=%s: %s", ds, warning)
    if drift["data_docs"]:
        log.info("raw events dt=%s: drift checks data docs: %s", ds, drift["data_docs"])
    if not drift["success"]:
        raise DataCheckError(
            f"{partition_path(layout.validated_events, ds)}: {len(drift['failures'])} drift check(s) of severity "
            f"fail: {'; '.join(drift['failures'])}. Training is stopped. Bands come from the trailing "
            f"{drift['history_days']} days; see the data docs at {', '.join(drift['data_docs'].values())}. Fix or "
            f"re-land the day and rerun, or set checks.severity.<check>: warn if this is expected")
    return summary


def raw_limits(config: PipelineConfig) -> RawLimits:
    """The raw contract's sizes from ``validation.max_*``."""
    validation = config.validation
    return RawLimits(max_event_id_length=validation.max_event_id_length, max_id_length=validation.max_id_length,
                     max_text_length=validation.max_text_length, max_price=validation.max_price)


def already_validated(config: PipelineConfig, ds: str) -> bool:
    """The one rule for "an earlier night validated this day": its record says the day was read and judged.

    A record without counts (the raw partition was missing, or validation crashed) does not count, so
    the day is validated again once it has landed. Used by the local runner for a window's earlier days.
    """
    return "rows_in" in lake.read_record(config.layout.check_record(ds, lake.RAW_EVENTS_CHECK))
