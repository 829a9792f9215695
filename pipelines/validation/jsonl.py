"""Read raw JSON Lines robustly: every line is counted, as a row, a malformed line or a blank line.

Nothing is dropped silently. A line that is not UTF-8 (``invalid_utf8``), not JSON or not a JSON
object (``malformed_json``) becomes a malformed line with its text and reason; blank lines are
counted, so that a file's lines = rows + malformed + blank. A UTF-8 byte-order mark (files saved on
Windows) is stripped from a file's first line. Every row keeps its source file, 1-based line number
and the line as it arrived, so quarantine loses nothing.

Values are normalised for the checks, and whether each contracted field arrived as something other
than a string or an integer is kept beside it (``<field>__not_text``) so that the suite can refuse
objects, arrays, booleans and floats where text is expected: strings stay (blank ones count as
missing), integers become their decimal text, anything else its JSON text. Prices keep their number, NaN and infinities included, for the
price checks to refuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import columns as C

log = logging.getLogger(__name__)
BOM = b"\xef\xbb\xbf"
MALFORMED_JSON, INVALID_UTF8 = "malformed_json", "invalid_utf8"
TYPED_COLUMNS = (*C.ID_COLUMNS, *C.TEXT_COLUMNS)  # the fields whose type is checked (ids and text)
TYPE_COLUMNS = tuple(f"{column}{C.NOT_TEXT_SUFFIX}" for column in TYPED_COLUMNS)


@dataclass(frozen=True)
class RawLines:
    """The rows of some JSON Lines files (C.RAW_COLUMNS as arrived, object dtype) and the malformed lines."""

    rows: pd.DataFrame  # C.RAW_COLUMNS + TYPE_COLUMNS + C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE
    malformed: pd.DataFrame  # C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE, C.QUARANTINE_REASON
    blank_lines: int = 0  # empty or whitespace-only lines (a trailing newline is not a line)


def iter_json_lines(files: list[Path], relative_to: Path, record_types: bool = True,
                    chunk_rows: int | None = 500_000) -> Iterator[RawLines]:
    """Parse ``files`` line by line, in parts of at most ``chunk_rows`` non-blank lines, read as a stream.

    Source files are named relative to ``relative_to``. ``record_types=False`` leaves the
    ``__not_text`` columns False (the benchmark's baseline only).

    Lines are read one at a time, so memory holds one part, not the day. Parts follow the files'
    order and their lines' order; a part may span two files. Each blank line is counted in the part
    being read; at least one part is yielded (empty when the files hold no line). ``None``: one part.
    """
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: must be >= 1 (or None for one part)")
    lines: list[tuple[str, int, bytes]] = []
    blank, warned, yielded = 0, [False], False
    for path in files:
        source = path.relative_to(relative_to).as_posix()
        with path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                raw = raw.removesuffix(b"\n")
                if line_number == 1:
                    raw = raw.removeprefix(BOM)
                if not raw.strip():
                    blank += 1
                    continue
                lines.append((source, line_number, raw))
                if chunk_rows is not None and len(lines) >= chunk_rows:
                    yield _parse_part(lines, blank, record_types, files, warned)
                    lines, blank, yielded = [], 0, True
    if lines or blank or not yielded:
        yield _parse_part(lines, blank, record_types, files, warned)


def _parse_part(lines: list[tuple[str, int, bytes]], blank: int, record_types: bool, files: list[Path],
                warned: list[bool]) -> RawLines:
    records: list[dict] = []
    positions: list[tuple[str, int, str]] = []
    malformed: list[tuple[str, int, str, str]] = []
    for source, line_number, raw in lines:
        text, record, reason = _parse_line(raw)
        if record is None:
            malformed.append((source, line_number, text, reason))
        else:
            records.append(record)
            positions.append((source, line_number, text))
    if not warned[0]:
        warned[0] = _warn_about_unknown_keys(records, files)
    # Built column by column with object dtype: values stay as they arrived (no 42 -> 42.0).
    rows = pd.DataFrame({column: [_normalise(column, record.get(column)) for record in records]
                         for column in C.RAW_COLUMNS}, dtype=object)
    for column, type_column in zip(TYPED_COLUMNS, TYPE_COLUMNS, strict=True):
        rows[type_column] = np.fromiter((_not_text(record.get(column)) for record in records), bool,
                                        len(records)) if record_types else np.zeros(len(records), bool)
    rows[[C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE]] = _positions_frame(positions)
    bad = pd.DataFrame(malformed, columns=[C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE, C.QUARANTINE_REASON])
    bad = bad.astype({C.SOURCE_FILE: object, C.SOURCE_LINE: "int64", C.RAW_LINE: object, C.QUARANTINE_REASON: object})
    return RawLines(rows=rows, malformed=bad, blank_lines=blank)


def _not_text(value: object) -> bool:
    """Neither missing, a string nor an integer (a boolean is not an integer here)."""
    kind = type(value)
    return not (value is None or kind is str or kind is int)


def _positions_frame(positions: list[tuple[str, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(positions, columns=[C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE])
    return frame.astype({C.SOURCE_FILE: object, C.SOURCE_LINE: "int64", C.RAW_LINE: object})


def _parse_line(raw: bytes) -> tuple[str, dict | None, str | None]:
    """The line's text, its JSON object (None when it is not one) and why not."""
    try:
        text = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").rstrip("\r"), None, INVALID_UTF8
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return text, None, MALFORMED_JSON
    return (text, record, None) if isinstance(record, dict) else (text, None, MALFORMED_JSON)


def _normalise(column: str, value: object) -> object:
    """The value as the checks see it (see the module doc)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if column == C.PRICE and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _warn_about_unknown_keys(records: list[dict], files: list[Path]) -> bool:
    """Warn (once per day: the caller stops asking after a warning) about fields that are not raw columns."""
    unknown = set().union(*(record.keys() for record in records)) - set(C.RAW_COLUMNS) if records else set()
    if unknown:
        log.warning("%s: ignoring fields that are not raw event columns: %s; add them to "
                    "pipelines/columns.py RAW_COLUMNS if they should be kept", files[0].parent, sorted(unknown))
    return bool(unknown)
