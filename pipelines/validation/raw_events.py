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
(per worker) whatever the day's size. With ``validation.workers`` > 1, parts are parsed and checked
at once in that many spawned processes (``check_part``) while this one reads the lines, decides the
duplicates in the day's order and writes. The results depend on neither the part size nor the
workers (duplicates are decided over the whole day, ``DuplicateLedger``). Each part has its own Data
Docs page (``<ds> part <n>``).
When more than ``max_failure_rate`` of the rows fail, the quarantine is still written (so people can
look), the validated partition is left as it was, and ``RawDataError`` says what happened.
"""

from __future__ import annotations

import collections
import gc
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import filesystem as fs
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
from pipelines.validation.checks import open_gx_context
from pipelines.validation.jsonl import (
    LinePart,
    RawLines,
    iter_line_parts,
    parse_part,
    warn_about_unknown_keys,
)
from pipelines.validation.raw_events_suite import (
    DUPLICATE_EVENT_ID,
    EVENT_TIME_UTC,
    PRICE_VALUE,
    RawLimits,
    add_parsed_columns,
    register_raw_events_checkpoint,
    run_raw_events_checkpoint,
)

QUARANTINE_COLUMNS = (*RAW_COLUMNS, QUARANTINE_REASON, SOURCE_FILE, SOURCE_LINE, RAW_LINE)
DEFAULT_CHUNK_ROWS = 250_000  # lines read and checked at once (validation.chunk_rows)


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
    workers: int = 1,
) -> RawValidationResult:
    """Validate the raw events of ``ds`` (event times in [interval_start, interval_end)); see the module doc.

    The day is read and checked in parts of ``chunk_rows`` lines (``None``: whole), so memory holds one
    part a worker: accepted rows are appended to the validated file part by part (one row group each),
    the quarantine (a small share, or the gate stops the day) is kept until the end. Up to ``workers``
    parts are parsed and checked at once, each in a process of its own (``check_part``); this process
    reads the lines, decides the duplicates in the day's order and writes. The result is the same for
    any ``chunk_rows`` and ``workers``: duplicates are decided across parts (``DuplicateLedger``).
    """
    start, end = _utc_interval(interval_start, interval_end)
    if not 0.0 <= max_failure_rate <= 1.0:
        raise ValueError(f"max_failure_rate={max_failure_rate}: must be a share in [0, 1], e.g. 0.05")
    if workers < 1:
        raise ValueError(f"workers={workers}: must be >= 1 (validation.workers: processes checking parts at once)")
    limits = limits or RawLimits()
    files = _day_files(raw_partition, ds)
    register_raw_events_checkpoint(Path(gx_project_dir), limits)
    settings = PartSettings(Path(gx_project_dir), ds, start, end, limits, suppressions)
    ledger, quarantined, pages = DuplicateLedger(), [], []
    accepted_rows = blank_lines = suppressed = lines_read = 0
    warned = False
    with atomic_partition(Path(validated_partition)) as staging:
        with fs.parquet_writer(staging / PART_FILE, _validated_schema()) as writer:
            parts = iter_line_parts(files, fs.parent(raw_partition), chunk_rows)
            for checked in check_parts(parts, settings, workers):
                lines_read += checked.lines_read
                suppressed, blank_lines = suppressed + checked.rows_suppressed, blank_lines + checked.blank_lines
                pages.append(checked.data_docs_path)
                if not warned:
                    warned = warn_about_unknown_keys(checked.unknown_keys, raw_partition)
                reasons = _with_duplicates(checked.rows, ledger)
                accepted = checked.rows.filter(pa.array(reasons == ""))
                quarantined.append(_quarantine_rows(checked, reasons))
                accepted_rows += accepted.num_rows
                writer.write_table(_validated_rows(accepted))
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


@dataclass(frozen=True)
class PartSettings:
    """What checking a part needs besides its lines (sent to each worker process)."""

    gx_project_dir: Path
    ds: str
    interval_start: datetime
    interval_end: datetime
    limits: RawLimits
    suppressions: Suppressions | None


@dataclass(frozen=True)
class CheckedPart:
    """One part of a day, parsed and checked (``check_part``): all the writer needs to finish it."""

    rows: pa.Table  # CHECKED_COLUMNS: every row, as text, its parsed time and price, position, reasons
    malformed: pd.DataFrame  # the part's malformed lines, as quarantine rows (QUARANTINE_COLUMNS)
    lines_read: int  # rows and malformed lines, suppressed people's included
    rows_suppressed: int
    blank_lines: int
    data_docs_path: str
    unknown_keys: tuple[str, ...]


REASONS = "reasons_but_duplicates"  # a row's ';'-joined reasons from every check but the duplicates ('': none)
CHECKED_COLUMNS = (*RAW_COLUMNS, EVENT_TIME_UTC, PRICE_VALUE, SOURCE_FILE, SOURCE_LINE, RAW_LINE, REASONS)


def check_parts(parts: Iterator[LinePart], settings: PartSettings, workers: int) -> Iterator[CheckedPart]:
    """``check_part`` of each part, in order; with ``workers`` > 1 and more than one part, in a process pool.

    At most ``workers`` parts are in flight, so memory holds about ``workers`` + 1 parts.
    """
    parts = iter(parts)
    ahead = list(itertools.islice(parts, 2))  # a day of one part is checked here: no processes to start
    parts = itertools.chain(ahead, parts)
    if workers == 1 or len(ahead) < 2:
        for number, part in enumerate(parts):
            yield check_part(number, part, settings)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the task process may hold threads (Airflow's, Spark's) a fork would copy mid-flight
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for _ in range(workers):
            pool.submit(_warm_up)
        numbered = enumerate(parts)
        in_flight = collections.deque(pool.submit(check_part, number, part, settings)
                                      for number, part in itertools.islice(numbered, workers))
        while in_flight:
            checked = in_flight.popleft().result()
            in_flight.extend(pool.submit(check_part, number, part, settings)
                             for number, part in itertools.islice(numbered, 1))
            yield checked
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    open_gx_context(settings.gx_project_dir).build_data_docs()  # the index, after parts wrote theirs at once


def _warm_up() -> None:
    """Import Great Expectations in a worker before its first part arrives."""
    import great_expectations  # noqa: F401


def check_part(number: int, part: LinePart, settings: PartSettings) -> CheckedPart:
    """Parse part ``number`` (0-based) of the day, drop suppressed people's rows, run the GX checkpoint.

    Its rows' reasons are every check's but the duplicates', which ``DuplicateLedger`` decides over
    the whole day in order. Runs in a worker process when parts are checked at once.
    """
    lines = parse_part(part, settings.limits.enforce_contract)
    lines_read = len(lines.rows) + len(lines.malformed)
    lines, dropped = drop_suppressed(lines, settings.suppressions)
    frame = add_parsed_columns(lines.rows, settings.limits)
    run_name = settings.ds if number == 0 else f"{settings.ds} part {number + 1}"
    outcome = run_raw_events_checkpoint(settings.gx_project_dir, frame, run_name, settings.interval_start,
                                        settings.interval_end, settings.limits, register=False)
    rows = pa.table({
        **{column: pa.array(frame[column].to_numpy(), pa.string(), from_pandas=True)
           for column in RAW_COLUMNS if column != PRICE},
        PRICE: pa.array([_as_text(value) for value in frame[PRICE].tolist()], pa.string()),
        EVENT_TIME_UTC: pa.array(frame[EVENT_TIME_UTC].dt.as_unit("us"), pa.timestamp("us", tz="UTC")),
        PRICE_VALUE: pa.array(frame[PRICE_VALUE].to_numpy(), pa.float64(), from_pandas=True),  # NaN: null
        SOURCE_FILE: pa.array(frame[SOURCE_FILE].to_numpy(), pa.string()),
        SOURCE_LINE: pa.array(frame[SOURCE_LINE].to_numpy(), pa.int64()),
        RAW_LINE: pa.array(lines.rows[RAW_LINE].to_numpy(), pa.string()),
        REASONS: pa.array(_reasons_but_duplicates(len(frame), outcome.failing_rows), pa.string()),
    }).select(list(CHECKED_COLUMNS))
    malformed = _as_text_frame(lines.malformed.reindex(columns=list(QUARANTINE_COLUMNS)), QUARANTINE_COLUMNS)
    checked = CheckedPart(rows, malformed, lines_read, dropped, lines.blank_lines, outcome.data_docs_path,
                          lines.unknown_keys)
    del frame, lines, outcome
    # GX's validator holds the part's frame in reference cycles, which only a full collection frees: left
    # to the collector's own schedule (rare, with millions of objects alive) a worker kept every part's
    # frame, and the process tree grew by some 0.5 GiB a part (12.6 GiB at 10M events a day).
    gc.collect()
    return checked


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

    def duplicates(self, event_ids: list, clean: np.ndarray) -> np.ndarray:
        """bool[n]: the rows (in order) that are extra copies."""
        extra = np.zeros(len(event_ids), dtype=bool)
        kept_clean = self._kept_clean
        for row, (event_id, ok) in enumerate(zip(event_ids, clean.tolist(), strict=True)):
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
    if not fs.is_dir(raw_partition):
        raise RawDataError(f"{raw_partition}: partition folder does not exist; {advice}")
    files = fs.list_dir(raw_partition, suffix=".jsonl", hidden=True)
    if not files:
        raise RawDataError(f"{raw_partition}: no *.jsonl files found; {advice}")
    return files


def _reasons_but_duplicates(count: int, failing_rows: dict[str, list[int]]) -> list[str]:
    """';'-joined reasons per row ('' for rows that passed), in suite order, leaving duplicates out.

    GX's ``duplicate_event_id`` result names the copies within this part; the ledger decides which
    copy is kept over the whole day, so its rows are not used here (the Data Docs still show them).
    """
    reasons: dict[int, list[str]] = {}
    for reason, rows in failing_rows.items():
        if reason != DUPLICATE_EVENT_ID:
            for row in rows:
                reasons.setdefault(row, []).append(reason)
    joined = [""] * count
    for row, row_reasons in reasons.items():
        joined[row] = ";".join(row_reasons)
    return joined


def _with_duplicates(rows: pa.Table, ledger: DuplicateLedger) -> np.ndarray:
    """object[n]: each row's final reasons: the checks' and, where the ledger says so, ``duplicate_event_id``."""
    reasons = rows.column(REASONS).to_numpy(zero_copy_only=False).astype(object)
    extra = ledger.duplicates(rows.column(EVENT_ID).to_pylist(), reasons == "")
    reasons[extra] = [f"{joined};{DUPLICATE_EVENT_ID}" if joined else DUPLICATE_EVENT_ID for joined in reasons[extra]]
    return reasons


def _quarantine_rows(checked: CheckedPart, reasons: np.ndarray) -> pd.DataFrame:
    """The part's refused rows and malformed lines as quarantine rows (text as arrived), in line order."""
    refused_at = np.flatnonzero(reasons != "")
    refused = checked.rows.take(pa.array(refused_at, pa.int64())).to_pandas()
    refused[QUARANTINE_REASON] = reasons[refused_at]
    both = pd.concat([refused.reindex(columns=list(QUARANTINE_COLUMNS)), checked.malformed], ignore_index=True)
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


def _validated_rows(accepted: pa.Table) -> pa.Table:
    """Accepted rows in the validated schema: the parsed event time and price, the rest as text."""
    typed = {EVENT_TIME: accepted.column(EVENT_TIME_UTC), PRICE: accepted.column(PRICE_VALUE)}
    return pa.table({column: typed.get(column, accepted.column(column)) for column in RAW_COLUMNS},
                    schema=_validated_schema())


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
    types = {EVENT_TIME: pa.timestamp("us", tz="UTC"), PRICE: pa.float64()}
    return pa.schema([(column, types.get(column, pa.string())) for column in RAW_COLUMNS])


def _quarantine_schema():
    return pa.schema([(column, pa.int64() if column == SOURCE_LINE else pa.string()) for column in QUARANTINE_COLUMNS])


def _write_parquet(partition: Path, frame: pd.DataFrame, schema, counts: dict | None = None) -> None:
    """One Parquet file (with the schema even when empty), swapped in atomically; optional _counts.json."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_partition(Path(partition)) as staging:
        fs.write_parquet(table, staging / PART_FILE)
        if counts is not None:
            write_json_atomic(staging / COUNTS_FILE, counts)
