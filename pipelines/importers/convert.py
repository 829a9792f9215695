"""Turn one chunk of an export into raw-schema rows, vectorised; rows that cannot be mapped get reasons.

The importer refuses only what it cannot place or represent: malformed lines, a time that is missing,
does not parse or does not exist in the mapping's time zone, an event type the mapping does not
translate, and absurd prices. Everything else (a missing user, a negative price ...) lands as it is
and the nightly validation quarantines it with its own reasons, so one set of rules decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines import columns as C
from pipelines.importers.mapping import FieldSpec, Mapping
from pipelines.importers.readers import MALFORMED_ROW, Chunk

MISSING_TIME = "missing_time"
UNPARSEABLE_TIME = "unparseable_time"
NONEXISTENT_LOCAL_TIME = "nonexistent_or_ambiguous_local_time"
UNMAPPED_EVENT_TYPE = "unmapped_event_type"
ABSURD_PRICE = "absurd_price"
DAY = "_day"
QUARANTINE_FIELDS = (C.SOURCE_FILE, C.SOURCE_LINE, C.QUARANTINE_REASON, "column", "value", "detail", C.RAW_LINE)


@dataclass
class OrderState:
    """Lines seen so far (per user, or in the file), for times synthesised from the order."""

    per_user: dict
    in_file: int = 0


@dataclass(frozen=True)
class Converted:
    rows: pd.DataFrame  # RAW_COLUMNS + DAY, in input order
    quarantine: pd.DataFrame  # QUARANTINE_FIELDS


class _Problems:
    """First problem per row (reason, their column, value, detail) plus every reason, ';'-joined."""

    def __init__(self, n: int):
        self.reasons = [[] for _ in range(n)]
        self.first: list[tuple[str, object, str] | None] = [None] * n

    def add(self, mask: np.ndarray, reason: str, column: str | None, values: pd.Series | None, detail: str):
        for row in np.flatnonzero(mask):
            self.reasons[row].append(reason)
            if self.first[row] is None:
                value = None if values is None else values.iat[row]
                self.first[row] = (column, value, detail)

    @property
    def refused(self) -> np.ndarray:
        return np.array([bool(r) for r in self.reasons], dtype=bool)


def convert_chunk(chunk: Chunk, mapping: Mapping, source_file: str, state: OrderState) -> Converted:
    n = len(chunk)
    cols = {name: _clean(values, mapping.null_values) for name, values in chunk.values.items()}
    problems = _Problems(n)
    out = {key: _resolve(spec, cols, n) for key, spec in mapping.field_specs().items()}
    times = _event_times(mapping, cols, n, out.get(C.USER_ID), problems, state)
    out[C.EVENT_TYPE] = _event_types(mapping, cols, n, problems)
    if C.PRICE in out:
        out[C.PRICE] = _prices(out[C.PRICE], mapping.max_price, problems)
    day = times.dt.strftime("%Y-%m-%d")
    out[C.EVENT_TIME] = times.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if C.EVENT_ID not in out:
        out[C.EVENT_ID] = pd.Series([_event_id(mapping.source, source_file, line) for line in chunk.lines], dtype=object)
    if C.SESSION_ID not in out:
        out[C.SESSION_ID] = out[C.USER_ID].where(out[C.USER_ID].isna(), out[C.USER_ID] + ":" + day)
    rows = pd.DataFrame({c: out.get(c, pd.Series([None] * n, dtype=object)) for c in C.RAW_COLUMNS})
    rows[DAY] = day
    refused = problems.refused
    quarantine = _quarantine(chunk, source_file, problems, refused)
    return Converted(rows=rows.loc[~refused].reset_index(drop=True), quarantine=quarantine)


def _event_id(source: str, source_file: str, line: int) -> str:
    """Stable across re-imports of the same file (name and line), so a re-import replaces, never duplicates."""
    return f"{source}-{hashlib.sha1(f'{source_file}:{line}'.encode()).hexdigest()[:20]}"


def _clean(values: list, null_values: tuple[str, ...]) -> pd.Series:
    series = pd.Series(values, dtype=object).str.strip()
    return series.where(~series.isin(null_values) & series.notna(), None)


def _resolve(spec: FieldSpec, cols: dict[str, pd.Series], n: int) -> pd.Series:
    if spec.value is not None:
        return pd.Series([spec.value] * n, dtype=object)
    result = pd.Series([None] * n, dtype=object)
    for ref in spec.columns:
        candidate = cols[ref.column]
        if ref.prefix:
            candidate = candidate.where(candidate.isna(), ref.prefix + candidate)
        result = result.where(result.notna(), candidate)
    return result


def _event_times(mapping: Mapping, cols, n: int, users: pd.Series | None, problems: _Problems,
                 state: OrderState) -> pd.Series:
    spec = mapping.event_time
    if spec.from_order is not None:
        return _ordered_times(spec.from_order, users, n, state)
    text = cols[spec.column]
    problems.add(text.isna().to_numpy(), MISSING_TIME, spec.column, text, f"column {spec.column!r} is empty")
    times, local_gap = _parse_times(text, spec.format, mapping.timezone)
    bad = (times.isna() & text.notna()).to_numpy()
    problems.add(bad & ~local_gap, UNPARSEABLE_TIME, spec.column, text,
                 f"column {spec.column!r} does not match the format {spec.format!r}")
    problems.add(local_gap, NONEXISTENT_LOCAL_TIME, spec.column, text,
                 f"column {spec.column!r}: no such local time in {mapping.timezone} (clock change)")
    if spec.plus_millis_column:
        extra = cols[spec.plus_millis_column]
        millis = pd.to_numeric(extra, errors="coerce")
        problems.add(millis.isna().to_numpy(), UNPARSEABLE_TIME, spec.plus_millis_column, extra,
                     f"column {spec.plus_millis_column!r} is not a number of milliseconds")
        times = times + pd.to_timedelta(millis.fillna(0), unit="ms")
    return times


def _parse_times(text: pd.Series, fmt: str, zone: str) -> tuple[pd.Series, np.ndarray]:
    """UTC times (NaT where they do not parse) and where a local time does not exist in ``zone``."""
    if fmt in ("epoch_seconds", "epoch_millis"):
        number = pd.to_numeric(text, errors="coerce")
        unit = "s" if fmt == "epoch_seconds" else "ms"
        return pd.to_datetime(number, unit=unit, utc=True, errors="coerce"), np.zeros(len(text), dtype=bool)
    if fmt == "iso8601":
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", na=False).to_numpy()
        aware = pd.to_datetime(text.where(has_offset), utc=True, format="ISO8601", errors="coerce")
        naive = pd.to_datetime(text.where(~has_offset), format="ISO8601", errors="coerce")
    elif "%z" in fmt or "%Z" in fmt:
        return pd.to_datetime(text, format=fmt, utc=True, errors="coerce"), np.zeros(len(text), dtype=bool)
    else:
        has_offset = np.zeros(len(text), dtype=bool)
        aware = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        naive = pd.to_datetime(text, format=fmt, errors="coerce")
    local = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    gap = (naive.notna() & local.isna()).to_numpy()
    return aware.where(has_offset, local), gap


def _ordered_times(spec, users: pd.Series | None, n: int, state: OrderState) -> pd.Series:
    """start + k * step, k = the line's position among the user's lines (or the file's), from 0."""
    if spec.per == "file" or users is None:
        position = np.arange(state.in_file, state.in_file + n)
    else:
        keys = users.fillna("")
        position = (keys.groupby(keys, sort=False).cumcount() + keys.map(state.per_user).fillna(0)).to_numpy()
        for user, count in keys.value_counts(sort=False).items():
            state.per_user[user] = state.per_user.get(user, 0) + int(count)
    state.in_file += n
    start = pd.Timestamp(spec.start).tz_convert("UTC")
    return pd.Series(start + pd.to_timedelta(position * spec.step_seconds, unit="s"))


def _event_types(mapping: Mapping, cols, n: int, problems: _Problems) -> pd.Series:
    spec = mapping.event_type
    if spec.value is not None:
        return pd.Series([spec.value] * n, dtype=object)
    theirs = cols[spec.column]
    ours = theirs.map(spec.values)
    problems.add(ours.isna().to_numpy(), UNMAPPED_EVENT_TYPE, spec.column, theirs,
                 f"value of column {spec.column!r} is not in event_type.values {sorted(spec.values)}; "
                 f"add it to the mapping")
    return ours.astype(object).where(ours.notna(), None)


def _prices(text: pd.Series, max_price: float, problems: _Problems) -> pd.Series:
    """Numbers where they parse; the original text where not (validation quarantines it); absurd ones refused."""
    number = pd.to_numeric(text, errors="coerce")
    problems.add((number > max_price).to_numpy(), ABSURD_PRICE, C.PRICE, text,
                 f"price above max_price={max_price:g}")
    return pd.Series(np.where(number.notna(), number.astype(object), text), dtype=object).where(text.notna(), None)


def _quarantine(chunk: Chunk, source_file: str, problems: _Problems, refused: np.ndarray) -> pd.DataFrame:
    records = []
    for row in np.flatnonzero(refused):
        column, value, detail = problems.first[row]
        records.append((source_file, chunk.lines[row], ";".join(problems.reasons[row]), column,
                        None if value is None else str(value), detail, chunk.raw[row]))
    records += [(source_file, line, MALFORMED_ROW, None, None, why, text) for line, text, why in chunk.malformed]
    frame = pd.DataFrame(records, columns=list(QUARANTINE_FIELDS))
    return frame.sort_values(C.SOURCE_LINE, kind="stable", ignore_index=True)
