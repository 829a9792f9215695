"""Read raw JSON Lines robustly: every line is kept, either as a row or as a malformed line.

Nothing is dropped silently. A line that is not UTF-8, not JSON, or not a JSON object becomes a
malformed line with its text; only blank lines (a trailing newline, say) are skipped. Every row keeps
its source file and 1-based line number, and the line as it arrived, so quarantine loses nothing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.columns import RAW_COLUMNS, RAW_LINE, SOURCE_FILE, SOURCE_LINE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawLines:
    """The rows of some JSON Lines files (RAW_COLUMNS as arrived, object dtype) and the malformed lines."""

    rows: pd.DataFrame  # RAW_COLUMNS + SOURCE_FILE, SOURCE_LINE, RAW_LINE
    malformed: pd.DataFrame  # SOURCE_FILE, SOURCE_LINE, RAW_LINE


def read_json_lines(files: list[Path], relative_to: Path) -> RawLines:
    """Parse ``files`` line by line; source files are named relative to ``relative_to``."""
    records: list[dict] = []
    positions: list[tuple[str, int, str]] = []
    malformed: list[tuple[str, int, str]] = []
    for path in files:
        source = path.relative_to(relative_to).as_posix()
        for line_number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            text, record = _parse_line(raw)
            if record is None:
                malformed.append((source, line_number, text))
            else:
                records.append(record)
                positions.append((source, line_number, text))
    _warn_about_unknown_keys(records, files)
    # Built column by column with object dtype: values stay exactly as they arrived (no 42 -> 42.0).
    rows = pd.DataFrame({column: [_normalise_value(record.get(column)) for record in records]
                         for column in RAW_COLUMNS}, dtype=object)
    rows[[SOURCE_FILE, SOURCE_LINE, RAW_LINE]] = _positions_frame(positions)
    return RawLines(rows=rows, malformed=_positions_frame(malformed))


def _positions_frame(positions: list[tuple[str, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(positions, columns=[SOURCE_FILE, SOURCE_LINE, RAW_LINE])
    return frame.astype({SOURCE_FILE: object, SOURCE_LINE: "int64", RAW_LINE: object})


def _parse_line(raw: bytes) -> tuple[str, dict | None]:
    """The line's text and its JSON object, or None when it is not a JSON object."""
    try:
        text = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").rstrip("\r"), None
    try:
        record = json.loads(text)
    except ValueError:
        return text, None
    return text, record if isinstance(record, dict) else None


def _normalise_value(value: object) -> object:
    """Blank strings count as missing; nested objects become their JSON text (hashable, comparable)."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and math.isnan(value):  # JSON NaN, which Python's parser accepts
        return None
    return value


def _warn_about_unknown_keys(records: list[dict], files: list[Path]) -> None:
    unknown = set().union(*(record.keys() for record in records)) - set(RAW_COLUMNS) if records else set()
    if unknown:
        log.warning("%s: ignoring fields that are not raw event columns: %s; add them to "
                    "pipelines/columns.py RAW_COLUMNS if they should be kept", files[0].parent, sorted(unknown))
