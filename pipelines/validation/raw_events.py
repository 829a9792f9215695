"""Validate one day of raw events with Great Expectations; quarantine the rows that fail, with reasons.

The gate of the raw zone: it reads ``raw/events/dt=YYYY-MM-DD/*.jsonl``, runs the ``raw_events``
expectation suite through a checkpoint (which updates the Data Docs), writes accepted rows as typed
Parquet to the validated partition and refused rows, all fields as text with the reason, to the
quarantine partition. Both are written atomically, so a rerun replaces them.

A row failing several checks gets all its reasons, joined with ';' in suite order. Of rows sharing
an ``event_id`` the first that passes every other check is kept (the first copy when none does);
the other copies are quarantined as ``duplicate_event_id``. Blank strings count as missing values.
Blank lines are counted (``blank_lines``): the files' lines = rows_in + rows_suppressed + blank_lines,
where rows_in = rows_accepted + rows_quarantined. Rows of suppressed people (``pipelines.suppression``:
an erasure or suppression request was accepted for their user id or email) are dropped before any
check, so neither the quarantine nor the Data Docs keep anything of theirs; only their number is kept
(``rows_suppressed``).
The day is read and checked in parts of ``validation.chunk_rows`` lines, so memory holds one part
whatever the day's size; the results do not depend on the part size (duplicates are decided over
the whole day, ``DuplicateLedger``). Each part has its own Data Docs page (``<ds> part <n>``).
When more than ``max_failure_rate`` of the rows fail, the quarantine is still written (so people can
look), the validated partition is left as it was, and ``RawDataError`` says what happened.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.columns import (
    EMAIL,
    EVENT_ID,
    EVENT_TIME,
    PRICE,
    QUARANTINE_REASON,
    RAW_COLUMNS,
    RAW_LINE,
    SOURCE_FILE,
    SOURCE_LINE,
    USER_ID,
)
from pipelines.io import atomic_partition, write_json_atomic
from pipelines.lake import COUNTS_FILE, PART_FILE
from pipelines.suppression import Suppressions, ids_in_line
from pipelines.validation.jsonl import RawLines, iter_json_lines
from pipelines.validation.raw_events_suite import (
    DUPLICATE_EVENT_ID,
    EVENT_TIME_UTC,
    PRICE_VALUE,
    RawLimits,
    add_parsed_columns,
    run_raw_events_checkpoint,
)

QUARANTINE_COLUMNS = (*RAW_COLUMNS, QUARANTINE_REASON, SOURCE_FILE, SOURCE_LINE, RAW_LINE)
DEFAULT_CHUNK_ROWS = 500_000  # lines read and checked at once (validation.chunk_rows)


class RawDataError(ValueError):
    """A day of raw events that cannot go further: missing, empty, or too many bad rows."""

    def __init__(self, message: str, result: RawValidationResult | None = None):
        super().__init__(message)
        self.result = result  # the counts and reasons, when the day was read at all


@dataclass(frozen=True)
class RawValidationResult:
    ds: str
    rows_in: int  # rows_accepted + rows_quarantined, malformed lines included (blank lines not)
    rows_accepted: int
    rows_quarantined: int
    reasons: dict[str, int]  # reason -> rows; a row with several reasons counts under each
    failure_rate: float  # rows_quarantined / rows_in
    data_docs_path: str  # the Data Docs page of this validation
    success: bool  # failure_rate <= max_failure_rate
    blank_lines: int = 0  # empty lines in the files: lines = rows_in + rows_suppressed + blank_lines
    rows_suppressed: int = 0  # rows of suppressed people, dropped before the checks (not in rows_in)
    parts: int = 1  # parts the day was read and checked in (validation.chunk_rows lines each)

    def to_dict(self) -> dict:
        return asdict(self)


def validate_raw_events(
    raw_partition: Path,
    ds: str,
    interval_start: datetime,
    interval_end: datetime,
    validated_partition: Path,
    quarantine_partition: Path,
    gx_project_dir: Path,
    max_failure_rate: float,
    limits: RawLimits | None = None,
    suppressions: Suppressions | None = None,
    chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
) -> RawValidationResult:
    """Validate the raw events of ``ds`` (event times in [interval_start, interval_end)); see the module doc.

    The day is read and checked in parts of ``chunk_rows`` lines (``None``: whole), so memory holds one
    part: accepted rows are appended to the validated file part by part (one row group each), the
    quarantine (a small share, or the gate stops the day) is kept until the end. The result is the
    same for any ``chunk_rows``: duplicates are decided across parts (``DuplicateLedger``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw_partition = Path(raw_partition)
    start, end = _utc_interval(interval_start, interval_end)
    if not 0.0 <= max_failure_rate <= 1.0:
        raise ValueError(f"max_failure_rate={max_failure_rate}: must be a share in [0, 1], e.g. 0.05")
    limits = limits or RawLimits()
    files = _day_files(raw_partition, ds)
    ledger, quarantined, pages = DuplicateLedger(), [], []
    accepted_rows = blank_lines = suppressed = lines_read = 0
    with atomic_partition(Path(validated_partition)) as staging:
        with pq.ParquetWriter(staging / PART_FILE, _validated_schema()) as writer:
            parts = iter_json_lines(files, raw_partition.parent, limits.enforce_contract, chunk_rows)
            for number, lines in enumerate(parts):
                lines_read += len(lines.rows) + len(lines.malformed)
                lines, dropped = drop_suppressed(lines, suppressions)
                suppressed, blank_lines = suppressed + dropped, blank_lines + lines.blank_lines
                frame = add_parsed_columns(lines.rows, limits)
                run_name = ds if number == 0 else f"{ds} part {number + 1}"
                outcome = run_raw_events_checkpoint(Path(gx_project_dir), frame, run_name, start, end, limits)
                pages.append(outcome.data_docs_path)
                reasons = _reasons_per_row(frame, outcome.failing_rows, ledger)
                quarantined.append(_as_text_frame(_quarantine_rows(lines, reasons), QUARANTINE_COLUMNS))
                accepted = frame.loc[reasons.eq("").to_numpy()]
                accepted_rows += len(accepted)
                writer.write_table(pa.Table.from_pandas(_typed_accepted(accepted), schema=_validated_schema(),
                                                        preserve_index=False))
        if lines_read == 0:
            raise RawDataError(f"{raw_partition}: {len(files)} *.jsonl file(s) but zero rows (empty or blank lines "
                               f"only); the landing may have been cut short; re-land dt={ds} and rerun the task")
        quarantine = ledger.mark_first_copies(pd.concat(quarantined, ignore_index=True))
        result = _summarise(ds, accepted_rows, quarantine, pages[0], max_failure_rate, blank_lines, suppressed,
                            parts=len(pages))
        _write_parquet(quarantine_partition, quarantine, _quarantine_schema())
        if not result.success:
            raise RawDataError(_gate_message(raw_partition, quarantine_partition, result, max_failure_rate), result)
        write_json_atomic(staging / COUNTS_FILE, result.to_dict())
    return result


class DuplicateLedger:
    """Which copy of a repeated ``event_id`` is kept, decided over the parts of a day read in order.

    Of the rows sharing an id, the first that passes every other check is kept, or the first copy when
    none does; the others are ``duplicate_event_id``. Rows are seen in the day's order: a clean row is
    a duplicate when a clean copy was kept before it, a failing row when any copy came before it. The
    one case a later part decides, a failing first copy whose id a later clean copy is kept for, is
    settled at the end (``mark_first_copies``) on the quarantine, which holds that row.
    """

    def __init__(self) -> None:
        self._kept_clean: dict[str, bool] = {}  # id -> a clean copy was kept
        self._failing_first: set[str] = set()  # ids whose first copy failed other checks

    def duplicates(self, event_ids: pd.Series, clean: np.ndarray) -> np.ndarray:
        """bool[n]: the rows (in order) that are extra copies."""
        extra = np.zeros(len(event_ids), dtype=bool)
        kept_clean = self._kept_clean
        for row, (event_id, ok) in enumerate(zip(event_ids.tolist(), clean.tolist(), strict=True)):
            if event_id is None or (isinstance(event_id, float) and event_id != event_id):
                continue
            if event_id not in kept_clean:
                kept_clean[event_id] = ok
                if not ok:
                    self._failing_first.add(event_id)
            elif ok and not kept_clean[event_id]:
                kept_clean[event_id] = True  # the first clean copy after failing ones: kept
            else:
                extra[row] = True
        return extra

    def mark_first_copies(self, quarantine: pd.DataFrame) -> pd.DataFrame:
        """The quarantine with ``duplicate_event_id`` added to failing first copies a clean copy outlived."""
        settled = {event_id for event_id in self._failing_first if self._kept_clean[event_id]}
        if not settled:
            return quarantine
        first = quarantine[EVENT_ID].isin(settled).to_numpy() & ~quarantine[QUARANTINE_REASON].str.contains(
            DUPLICATE_EVENT_ID, regex=False).to_numpy()
        quarantine = quarantine.copy()
        quarantine.loc[first, QUARANTINE_REASON] = quarantine.loc[first, QUARANTINE_REASON] + f";{DUPLICATE_EVENT_ID}"
        return quarantine


def drop_suppressed(lines: RawLines, suppressions: Suppressions | None) -> tuple[RawLines, int]:
    """``lines`` less the rows and malformed lines of suppressed people, and how many were dropped."""
    if not suppressions:
        return lines, 0
    rows, malformed = lines.rows, lines.malformed
    keep_rows = ~(rows[USER_ID].map(suppressions.__contains__) | rows[EMAIL].map(suppressions.__contains__))
    keep_malformed = ~malformed[RAW_LINE].map(lambda text: any(value in suppressions for value in ids_in_line(text)))
    dropped = int((~keep_rows).sum() + (~keep_malformed).sum())
    kept = RawLines(rows=rows.loc[keep_rows.to_numpy()].reset_index(drop=True),
                    malformed=malformed.loc[keep_malformed.to_numpy()].reset_index(drop=True),
                    blank_lines=lines.blank_lines)
    return kept, dropped


def _utc_interval(interval_start: datetime, interval_end: datetime) -> tuple[datetime, datetime]:
    for name, value in (("interval_start", interval_start), ("interval_end", interval_end)):
        if value.tzinfo is None:
            raise ValueError(f"{name}={value}: naive datetime; pass a timezone-aware one "
                             f"(Airflow's data_interval_start/end are)")
    if interval_start >= interval_end:
        raise ValueError(f"interval [{interval_start}, {interval_end}): start must be before end")
    return (pd.Timestamp(interval_start).tz_convert("UTC").to_pydatetime(),
            pd.Timestamp(interval_end).tz_convert("UTC").to_pydatetime())


def _day_files(raw_partition: Path, ds: str) -> list[Path]:
    advice = f"the collector may not have landed dt={ds}; land it and rerun the task"
    if not raw_partition.is_dir():
        raise RawDataError(f"{raw_partition}: partition folder does not exist; {advice}")
    files = sorted(raw_partition.glob("*.jsonl"))
    if not files:
        raise RawDataError(f"{raw_partition}: no *.jsonl files found; {advice}")
    return files


def _reasons_per_row(frame: pd.DataFrame, failing_rows: dict[str, list[int]], ledger: DuplicateLedger) -> pd.Series:
    """';'-joined reasons per row of ``frame`` ('' for accepted rows); duplicates are the ledger's call.

    GX's ``duplicate_event_id`` result names the copies within this part; the ledger decides which
    copy is kept over the whole day, so its rows are not used here (the Data Docs still show them).
    """
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    for reason, rows in failing_rows.items():
        if reason != DUPLICATE_EVENT_ID:
            for row in rows:
                reasons[row].append(reason)
    clean = np.fromiter((not row_reasons for row_reasons in reasons), bool, len(reasons))
    for row in np.flatnonzero(ledger.duplicates(frame[EVENT_ID], clean)):
        reasons[row].append(DUPLICATE_EVENT_ID)
    return pd.Series([";".join(row_reasons) for row_reasons in reasons], index=frame.index, dtype=object)


def _quarantine_rows(lines: RawLines, reasons: pd.Series) -> pd.DataFrame:
    refused = lines.rows.loc[reasons.ne("").to_numpy()].assign(**{QUARANTINE_REASON: reasons[reasons.ne("")]})
    both = pd.concat([refused, lines.malformed], ignore_index=True).reindex(columns=list(QUARANTINE_COLUMNS))
    return both.sort_values([SOURCE_FILE, SOURCE_LINE], kind="stable", ignore_index=True)


def _summarise(ds: str, accepted: int, quarantine: pd.DataFrame, docs_path: str,
               max_failure_rate: float, blank_lines: int = 0, suppressed: int = 0, parts: int = 1
               ) -> RawValidationResult:
    rows_in = accepted + len(quarantine)
    failure_rate = len(quarantine) / rows_in if rows_in else 0.0
    counts = Counter(reason for joined in quarantine[QUARANTINE_REASON] for reason in joined.split(";"))
    result = RawValidationResult(
        ds=ds, rows_in=rows_in, rows_accepted=accepted, rows_quarantined=len(quarantine),
        reasons=dict(counts.most_common()), failure_rate=round(failure_rate, 6), data_docs_path=docs_path,
        success=failure_rate <= max_failure_rate, blank_lines=blank_lines, rows_suppressed=suppressed,
        parts=parts,
    )
    assert result.rows_in == result.rows_accepted + result.rows_quarantined, result
    return result


def _gate_message(raw_partition: Path, quarantine_partition: Path, result: RawValidationResult,
                  max_failure_rate: float) -> str:
    top = ", ".join(f"{reason}={count}" for reason, count in list(result.reasons.items())[:5])
    return (f"{raw_partition}: {result.rows_quarantined} of {result.rows_in} rows quarantined "
            f"({result.failure_rate:.2%}, above max_failure_rate={max_failure_rate:.2%}); "
            f"rows_in={result.rows_in} accepted={result.rows_accepted} quarantined={result.rows_quarantined}; "
            f"top reasons: {top}; the rows are in {quarantine_partition}; see the data docs at "
            f"{result.data_docs_path}; fix the collector or re-land the day and rerun the task, or raise "
            f"max_failure_rate if this is expected")


def _typed_accepted(accepted: pd.DataFrame) -> pd.DataFrame:
    typed = _as_text_frame(accepted, RAW_COLUMNS)
    typed[EVENT_TIME] = accepted[EVENT_TIME_UTC].dt.as_unit("us").reset_index(drop=True)
    typed[PRICE] = accepted[PRICE_VALUE].to_numpy(dtype="float64")
    return typed


def _as_text_frame(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Text of every value as it arrived (JSON text for numbers and booleans); SOURCE_LINE stays an int."""
    return pd.DataFrame({
        column: frame[column].to_numpy() if column == SOURCE_LINE else [_as_text(v) for v in frame[column].tolist()]
        for column in columns
    })


def _as_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _validated_schema():
    import pyarrow as pa

    types = {EVENT_TIME: pa.timestamp("us", tz="UTC"), PRICE: pa.float64()}
    return pa.schema([(column, types.get(column, pa.string())) for column in RAW_COLUMNS])


def _quarantine_schema():
    import pyarrow as pa

    return pa.schema([(column, pa.int64() if column == SOURCE_LINE else pa.string()) for column in QUARANTINE_COLUMNS])


def _write_parquet(partition: Path, frame: pd.DataFrame, schema, counts: dict | None = None) -> None:
    """One Parquet file (with the schema even when empty), swapped in atomically; optional _counts.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_partition(Path(partition)) as staging:
        pq.write_table(table, staging / PART_FILE)
        if counts is not None:
            write_json_atomic(staging / COUNTS_FILE, counts)
