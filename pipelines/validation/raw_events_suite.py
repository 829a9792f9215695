"""The Great Expectations suite for one day of raw events, and a checkpoint run that says which rows failed.

Each row-level expectation carries its quarantine reason in ``meta``; the checkpoint runs with
``result_format=COMPLETE`` and ``unexpected_index_column_names=[ROW_NUMBER]``, so GX's own results
name the failing rows. The only pandas pre-step parses ``event_time`` and ``price`` into typed
helper columns (GX cannot parse timestamps row by row); the checks on them are expectations too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.columns import (
    EVENT_ID,
    EVENT_TIME,
    EVENT_TYPE,
    EVENT_TYPES,
    ID_COLUMNS,
    ITEM_EVENT_TYPES,
    ITEM_ID,
    NO_CONTROL_CHARACTER_COLUMNS,
    PRICE,
    RAW_COLUMNS,
    RAW_LINE,
    REQUIRED_COLUMNS,
    SOURCE_FILE,
    SOURCE_LINE,
)
from pipelines.validation.checks import data_docs_page, open_gx_context
from pipelines.validation.jsonl import TYPE_COLUMNS, TYPED_COLUMNS

log = logging.getLogger(__name__)

# Helper columns of the frame GX sees; they never leave this module's caller.
ROW_NUMBER = "row_number"  # position of the row in the day: how GX results point back to it
EVENT_TIME_UTC = "event_time_utc"  # event_time parsed; NaT where it is not ISO-8601 with an offset
PRICE_VALUE = "price_value"  # price as a finite number; NaN where it is not one
PRICE_STATE = "price_state"  # number | not_a_number | not_finite (None: no price)
CONTRACT = "contract_violations"  # the raw contract's reasons a row breaks, ';'-joined (None: it keeps it)
GX_COLUMNS = (*RAW_COLUMNS, SOURCE_FILE, SOURCE_LINE, ROW_NUMBER, EVENT_TIME_UTC, PRICE_VALUE, PRICE_STATE, CONTRACT)
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
REASONS_IN_COLUMN = "reasons in column"  # meta of the expectation whose failing rows carry their reasons

# Quarantine reasons: one per row-level expectation, plus the ones decided outside GX.
DUPLICATE_EVENT_ID = "duplicate_event_id"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
MISSING_ITEM_ID = "missing_item_id"
UNPARSEABLE_EVENT_TIME = "unparseable_event_time"
EVENT_TIME_OUTSIDE_INTERVAL = "event_time_outside_interval"
PRICE_NOT_A_NUMBER = "price_not_a_number"
NEGATIVE_PRICE = "negative_price"
PRICE_NOT_FINITE = "price_not_finite"
PRICE_ABOVE_MAX = "price_above_max"
REASON_META_KEY = "quarantine_reason"

SUITE_NAME = CHECKPOINT_NAME = VALIDATION_NAME = "raw_events"
DATASOURCE_NAME, ASSET_NAME, BATCH_NAME = "raw_events", "raw_events_day", "whole_day"
ISO_8601_WITH_OFFSET = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"


@dataclass(frozen=True)
class CheckpointOutcome:
    failing_rows: dict[str, list[int]]  # quarantine reason -> ROW_NUMBERs, in suite order
    data_docs_path: str  # HTML page of this validation result


@dataclass(frozen=True)
class RawLimits:
    """The contract's sizes (``validation.max_*`` in the config)."""

    max_event_id_length: int = 128
    max_id_length: int = 256
    max_text_length: int = 2048
    max_price: float = 1_000_000.0
    enforce_contract: bool = True  # False: the suite as it was before the contract (make bench-validation only)

    def max_length(self, column: str) -> int:
        if column == EVENT_ID:
            return self.max_event_id_length
        return self.max_id_length if column in ID_COLUMNS else self.max_text_length


def missing_reason(column: str) -> str:
    return f"missing_{column}"


def not_text_reason(column: str) -> str:
    return f"{column}_not_text"


def too_long_reason(column: str) -> str:
    return f"{column}_too_long"


def control_characters_reason(column: str) -> str:
    return f"{column}_control_characters"


def add_parsed_columns(rows: pd.DataFrame, limits: RawLimits | None = None) -> pd.DataFrame:
    """The frame GX validates: the raw columns, row numbers, typed event time and price, the contract.

    Built in one constructor, so its columns sit in a few consolidated blocks: GX takes the frame's
    rows again for each expectation, and a frame grown column by column is re-consolidated each time.
    """
    limits = limits or RawLimits()
    times = rows[EVENT_TIME].map(lambda value: value if isinstance(value, str) else None)
    iso = times.str.match(ISO_8601_WITH_OFFSET, na=False)
    event_time_utc = pd.to_datetime(times.where(iso), utc=True, format="ISO8601", errors="coerce")
    prices = rows[PRICE].map(lambda value: None if isinstance(value, bool) else value)
    values = pd.to_numeric(prices, errors="coerce").astype("float64")
    finite = np.isfinite(values.to_numpy())
    given = rows[PRICE].map(lambda value: value is not None).to_numpy(dtype=bool)  # a JSON NaN is given
    numeric = values.notna().to_numpy()
    parsed = pd.DataFrame({
        PRICE_STATE: np.where(~given, None, np.where(~numeric & ~_is_nan(rows[PRICE]), "not_a_number",
                                                     np.where(finite, "number", "not_finite"))),
        PRICE_VALUE: values.where(finite).to_numpy()})
    contract = contract_violations(rows, parsed, limits) if limits.enforce_contract else np.full(len(rows), None)
    return pd.DataFrame({
        **{column: rows[column].to_numpy() for column in (*RAW_COLUMNS, SOURCE_FILE, SOURCE_LINE)},
        ROW_NUMBER: np.arange(len(rows)),
        EVENT_TIME_UTC: event_time_utc.array,
        PRICE_VALUE: parsed[PRICE_VALUE].to_numpy(),
        PRICE_STATE: parsed[PRICE_STATE].to_numpy(),
        CONTRACT: contract,
    }, columns=list(GX_COLUMNS))


def contract_reasons() -> list[str]:
    """Every reason of the raw contract, in the order a row's reasons are joined (``contract_violations``)."""
    reasons = [PRICE_NOT_FINITE, PRICE_ABOVE_MAX]
    for column in TYPED_COLUMNS:
        reasons += [not_text_reason(column), too_long_reason(column)]
        if column in NO_CONTROL_CHARACTER_COLUMNS:
            reasons.append(control_characters_reason(column))
    return reasons


def contract_violations(rows: pd.DataFrame, frame: pd.DataFrame, limits: RawLimits) -> np.ndarray:
    """object[n]: per row, the ';'-joined reasons it breaks the raw contract (``pipelines.columns``); None if none.

    ``frame`` holds the rows' parsed ``PRICE_STATE`` and ``PRICE_VALUE``.

    Vectorised over the columns (one GX expectation then checks the result), so the contract costs a
    few passes over the day rather than one expectation per field and reason.
    """
    checks: dict[str, np.ndarray] = {
        PRICE_NOT_FINITE: (frame[PRICE_STATE] == "not_finite").to_numpy(),
        PRICE_ABOVE_MAX: (frame[PRICE_VALUE] > limits.max_price).to_numpy(),
    }
    suspects = _may_hold_control_characters(rows)
    for column, not_text in zip(TYPED_COLUMNS, TYPE_COLUMNS, strict=True):
        values = rows[column]
        checks[not_text_reason(column)] = rows[not_text].to_numpy(dtype=bool)
        checks[too_long_reason(column)] = (values.str.len() > limits.max_length(column)).to_numpy(dtype=bool)
        if column in NO_CONTROL_CHARACTER_COLUMNS:
            found = np.zeros(len(rows), dtype=bool)
            found[suspects] = values.iloc[suspects].str.contains(CONTROL_CHARACTERS, regex=True,
                                                                 na=False).to_numpy(dtype=bool)
            checks[control_characters_reason(column)] = found
    assert list(checks) == contract_reasons(), "contract_reasons() must list these checks in this order"
    broken = np.logical_or.reduce(list(checks.values()))
    violations = np.full(len(rows), None, dtype=object)
    for row in np.flatnonzero(broken):  # few rows: the join costs nothing on a good day
        violations[row] = ";".join(reason for reason, failed in checks.items() if failed[row])
    return violations


def _may_hold_control_characters(rows: pd.DataFrame) -> np.ndarray:
    """int[m]: the rows whose values may hold a control character, found from their raw lines in one pass.

    JSON text holds no raw control character but DEL (\\x7f): the others arrive escaped (``\\n``,
    ``\\u0000``), and ``json.dumps`` of a non-text value escapes them again. So a line with neither a
    backslash nor a DEL has none in any value, and the regular expression runs on the other rows only.
    """
    if RAW_LINE not in rows:
        return np.arange(len(rows))
    return np.flatnonzero(np.fromiter(("\\" in line or "\x7f" in line for line in rows[RAW_LINE].tolist()),
                                      bool, len(rows)))


def _is_nan(values: pd.Series) -> np.ndarray:
    """True where the value arrived as the JSON number NaN (which is a number, but not a finite one)."""
    return values.map(lambda value: isinstance(value, float) and value != value).to_numpy(dtype=bool)


def build_raw_events_suite(limits: RawLimits | None = None):
    """Row-level checks, each tagged with its quarantine reason, plus the frame's schema."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    limits = limits or RawLimits()

    def tagged(expectation, reason: str):
        expectation.meta = {REASON_META_KEY: reason}
        return expectation

    interval = {"min_value": {"$PARAMETER": "interval_start"}, "max_value": {"$PARAMETER": "interval_end"}}
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=[
        gxe.ExpectTableColumnsToMatchSet(column_set=list(GX_COLUMNS), exact_match=True),
        *[tagged(gxe.ExpectColumnValuesToNotBeNull(column=column), missing_reason(column))
          for column in REQUIRED_COLUMNS],
        tagged(gxe.ExpectColumnValuesToNotBeNull(
            column=ITEM_ID, row_condition=Column(EVENT_TYPE).is_in(list(ITEM_EVENT_TYPES))), MISSING_ITEM_ID),
        tagged(gxe.ExpectColumnValuesToBeInSet(column=EVENT_TYPE, value_set=list(EVENT_TYPES)), UNKNOWN_EVENT_TYPE),
        tagged(gxe.ExpectColumnValuesToNotBeNull(
            column=EVENT_TIME_UTC, row_condition=Column(EVENT_TIME).is_not_null()), UNPARSEABLE_EVENT_TIME),
        tagged(gxe.ExpectColumnValuesToBeBetween(column=EVENT_TIME_UTC, strict_max=True, **interval),
               EVENT_TIME_OUTSIDE_INTERVAL),
        tagged(gxe.ExpectColumnValuesToBeUnique(column=EVENT_ID), DUPLICATE_EVENT_ID),
        tagged(gxe.ExpectColumnValuesToNotBeInSet(column=PRICE_STATE, value_set=["not_a_number"]),
               PRICE_NOT_A_NUMBER),
        tagged(gxe.ExpectColumnValuesToBeBetween(column=PRICE_VALUE, min_value=0), NEGATIVE_PRICE),
        tagged(gxe.ExpectColumnValuesToBeNull(column=CONTRACT), REASONS_IN_COLUMN),
    ])


ENGINES = ("pandas", "spark")  # GX's execution engine the checkpoint runs on; one suite for both


def register_raw_events_checkpoint(gx_project_dir: Path, limits: RawLimits | None = None,
                                   engine: str = "pandas") -> None:
    """Write the suite and checkpoint into the GX project, before parts are checked in other processes."""
    _register_checkpoint(open_gx_context(gx_project_dir), limits or RawLimits(), engine)


def run_raw_events_checkpoint(
    gx_project_dir: Path, frame, ds: str, interval_start: datetime, interval_end: datetime,
    limits: RawLimits | None = None, register: bool = True, engine: str = "pandas",
) -> CheckpointOutcome:
    """Validate ``frame`` through the ``raw_events`` checkpoint, which also updates the Data Docs.

    ``frame`` is what ``add_parsed_columns`` built, as a pandas DataFrame (``engine="pandas"``) or as
    a Spark DataFrame (``engine="spark"``, see ``as_spark_frame``): the same suite runs on GX's pandas
    or Spark execution engine, and the failing rows come back the same way.
    ``register=False``: the checkpoint was registered already (``register_raw_events_checkpoint``), so
    several processes can run it at once without rewriting the project's files under each other.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    context = open_gx_context(gx_project_dir)
    checkpoint = (_register_checkpoint(context, limits or RawLimits(), engine) if register
                  else context.checkpoints.get(_engine_name(CHECKPOINT_NAME, engine)))
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={"interval_start": interval_start, "interval_end": interval_end},
        run_id=RunIdentifier(run_name=ds, run_time=interval_start),  # a rerun replaces the day's page
    )
    [(result_id, suite_result)] = result.run_results.items()
    docs_path = data_docs_page(context, result_id)
    return CheckpointOutcome(failing_rows=_failing_rows(suite_result, docs_path), data_docs_path=docs_path)


def as_spark_frame(spark, frame: pd.DataFrame):
    """``frame`` (``add_parsed_columns``) as a Spark DataFrame for ``engine="spark"``: the same columns and rows.

    The raw ``price`` goes as its JSON text (a column may hold numbers and text; no expectation reads
    it, the checks use ``price_value`` and ``price_state``); ``event_time_utc`` as a UTC timestamp.
    """
    import json

    import pyarrow as pa

    types = {SOURCE_LINE: pa.int64(), ROW_NUMBER: pa.int64(), EVENT_TIME_UTC: pa.timestamp("us", tz="UTC"),
             PRICE_VALUE: pa.float64()}
    prices = [value if value is None or isinstance(value, str) else json.dumps(value)
              for value in frame[PRICE].tolist()]
    columns = {column: (prices if column == PRICE else
                        frame[column].dt.as_unit("us") if column == EVENT_TIME_UTC else frame[column].to_numpy())
               for column in GX_COLUMNS}
    table = pa.table({column: pa.array(values, types.get(column, pa.string()), from_pandas=True)
                      for column, values in columns.items()})
    return spark.createDataFrame(table)


def _engine_name(name: str, engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: GX runs the raw events suite on one of {list(ENGINES)}")
    return name if engine == "pandas" else f"{name}_{engine}"


def _register_checkpoint(context, limits: RawLimits, engine: str = "pandas"):
    """Add what is missing; the suite and checkpoint are rewritten so the code stays their source."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    datasource_name = _engine_name(DATASOURCE_NAME, engine)
    if datasource_name not in context.data_sources.all():
        (context.data_sources.add_pandas if engine == "pandas" else context.data_sources.add_spark)(datasource_name)
    datasource = context.data_sources.get(datasource_name)
    if ASSET_NAME not in datasource.get_asset_names():
        datasource.add_dataframe_asset(ASSET_NAME)
    asset = datasource.get_asset(ASSET_NAME)
    if BATCH_NAME not in {batch.name for batch in asset.batch_definitions}:
        asset.add_batch_definition_whole_dataframe(BATCH_NAME)
    suite = context.suites.add_or_update(build_raw_events_suite(limits))
    validation = context.validation_definitions.add_or_update(gx.ValidationDefinition(
        name=_engine_name(VALIDATION_NAME, engine), data=asset.get_batch_definition(BATCH_NAME), suite=suite))
    return context.checkpoints.add_or_update(gx.Checkpoint(
        name=_engine_name(CHECKPOINT_NAME, engine), validation_definitions=[validation],
        actions=[UpdateDataDocsAction(name="update_data_docs")],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_NUMBER],
                       "partial_unexpected_count": 20},
    ))


def _failing_rows(suite_result, docs_path: str) -> dict[str, list[int]]:
    """Reason -> failing ROW_NUMBERs, in row order; an expectation that errored or fails without rows is a bug.

    The contract's failing rows name their own reasons: GX's result entries carry the column's value
    beside the row number, on either engine.
    """
    failing: dict[str, list[int]] = {}
    for outcome in suite_result.results:
        config = outcome.expectation_config
        if (outcome.exception_info or {}).get("raised_exception"):
            raise RuntimeError(f"GX expectation {config.type} on {config.kwargs.get('column')} raised "
                               f"{outcome.exception_info.get('exception_message')}; see {docs_path}")
        reason = (config.meta or {}).get(REASON_META_KEY)
        if outcome.success:
            continue
        if reason is None:
            raise RuntimeError(f"GX expectation {config.type} failed on the frame built by "
                               f"add_parsed_columns (a code bug, not a data problem); see {docs_path}")
        entries = sorted(outcome.result["unexpected_index_list"], key=lambda entry: int(entry[ROW_NUMBER]))
        if reason != REASONS_IN_COLUMN:
            failing[reason] = [int(entry[ROW_NUMBER]) for entry in entries]
            continue
        own: dict[str, list[int]] = {}
        for entry in entries:  # the contract's expectation: each failing row names its own reasons
            for reason in entry[CONTRACT].split(";"):
                own.setdefault(reason, []).append(int(entry[ROW_NUMBER]))
        # In the contract's own order, so a row's reasons never depend on the other rows of its frame.
        failing.update((reason, own[reason]) for reason in contract_reasons() if reason in own)
    return failing
