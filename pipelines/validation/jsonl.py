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
from pipelines import filesystem as fs

log = logging.getLogger(__name__)
BOM = b"\xef\xbb\xbf"
MALFORMED_JSON, INVALID_UTF8 = "malformed_json", "invalid_utf8"
TYPED_COLUMNS = (*C.ID_COLUMNS, *C.TEXT_COLUMNS)  # the fields whose type is checked (ids and text)
TYPE_COLUMNS = tuple(f"{column}{C.NOT_TEXT_SUFFIX}" for column in TYPED_COLUMNS)
TYPED_NOT_TEXT = dict(zip(TYPED_COLUMNS, TYPE_COLUMNS, strict=True))


@dataclass(frozen=True)
class RawLines:
    """The rows of some JSON Lines files (C.RAW_COLUMNS as arrived, object dtype) and the malformed lines."""

    rows: pd.DataFrame  # C.RAW_COLUMNS + TYPE_COLUMNS + C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE
    malformed: pd.DataFrame  # C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE, C.QUARANTINE_REASON
    blank_lines: int = 0  # empty or whitespace-only lines (a trailing newline is not a line)
    unknown_keys: tuple[str, ...] = ()  # fields of the rows that are not raw columns (ignored)


@dataclass(frozen=True)
class LinePart:
    """Some consecutive non-blank lines of a day's files, unparsed, and the blank lines among them."""

    lines: list[tuple[str, int, bytes]]  # (source file, 1-based line number, the line's bytes)
    blank_lines: int = 0


def iter_line_parts(files: list[Path], relative_to: Path, chunk_rows: int | None = 250_000) -> Iterator[LinePart]:
    """The lines of ``files``, read as a stream, in parts of at most ``chunk_rows`` non-blank lines.

    Source files are named relative to ``relative_to``. Lines are read one at a time, so memory holds
    one part, not the day. Parts follow the files' order and their lines' order; a part may span two
    files. Each blank line is counted in the part being read; at least one part is yielded (empty when
    the files hold no line). ``None``: one part.
    """
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: must be >= 1 (or None for one part)")
    lines: list[tuple[str, int, bytes]] = []
    blank, yielded = 0, False
    for path in files:
        source = fs.relative_name(path, relative_to)
        for line_number, raw in enumerate(fs.iter_lines(path), start=1):
            if line_number == 1:
                raw = raw.removeprefix(BOM)
            if not raw.strip():
                blank += 1
                continue
            lines.append((source, line_number, raw))
            if chunk_rows is not None and len(lines) >= chunk_rows:
                yield LinePart(lines, blank)
                lines, blank, yielded = [], 0, True
    if lines or blank or not yielded:
        yield LinePart(lines, blank)


def parse_part(part: LinePart, record_types: bool = True) -> RawLines:
    """The rows and malformed lines of one part (see the module doc)."""
    records: list[dict] = []
    source_files: list[str] = []
    source_lines: list[int] = []
    raw_lines: list[str] = []
    malformed: list[tuple[str, int, str, str]] = []
    for source, line_number, raw in part.lines:
        text, record, reason = _parse_line(raw)
        if record is None:
            malformed.append((source, line_number, text, reason))
        else:
            records.append(record)
            source_files.append(source)
            source_lines.append(line_number)
            raw_lines.append(text)
    # Built column by column with object dtype: values stay as they arrived (no 42 -> 42.0). All columns
    # go into one constructor: a frame grown column by column is consolidated (copied) again and again.
    columns: dict[str, object] = {}
    keys: set[str] = set()
    for record in records:
        keys.update(record)
    for column in C.RAW_COLUMNS:
        values = [record.get(column) for record in records]
        if column in TYPED_NOT_TEXT:
            columns[TYPED_NOT_TEXT[column]] = (_not_text_flags(values) if record_types
                                                else np.zeros(len(records), bool))
        columns[column] = _normalised(column, values)
    rows = pd.DataFrame({**{column: np.array(columns[column], dtype=object) for column in C.RAW_COLUMNS},
                         **{column: columns[column] for column in TYPE_COLUMNS},
                         C.SOURCE_FILE: np.array(source_files, dtype=object),
                         C.SOURCE_LINE: np.array(source_lines, dtype=np.int64),
                         C.RAW_LINE: np.array(raw_lines, dtype=object)})
    bad = pd.DataFrame(malformed, columns=[C.SOURCE_FILE, C.SOURCE_LINE, C.RAW_LINE, C.QUARANTINE_REASON])
    bad = bad.astype({C.SOURCE_FILE: object, C.SOURCE_LINE: "int64", C.RAW_LINE: object, C.QUARANTINE_REASON: object})
    return RawLines(rows=rows, malformed=bad, blank_lines=part.blank_lines,
                    unknown_keys=tuple(sorted(keys - set(C.RAW_COLUMNS))))


def _normalised(column: str, values: list) -> list:
    """``_normalise`` of each value; non-blank strings, nearly every value, pass without a call."""
    return [value if type(value) is str and value.strip() else _normalise(column, value) for value in values]


def _not_text_flags(values: list) -> np.ndarray:
    """bool[n]: neither missing, a string nor an integer (a boolean is not an integer here)."""
    return np.fromiter((not (value is None or type(value) is str or type(value) is int) for value in values),
                       bool, len(values))


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


def warn_about_unknown_keys(keys: tuple[str, ...], folder: Path) -> bool:
    """Warn about fields that are not raw columns (the caller stops asking after a warning); True if it warned."""
    if keys:
        log.warning("%s: ignoring fields that are not raw event columns: %s; add them to "
                    "pipelines/columns.py RAW_COLUMNS if they should be kept", folder, list(keys))
    return bool(keys)
