"""Read an export (CSV or JSON Lines) in chunks of columns, keeping every line's number and text.

A line that cannot be read as a record (wrong number of fields, not JSON, not UTF-8) is returned as
malformed with its text, never dropped; blank lines are skipped. Columns the mapping names but the
file lacks fail at once, with the file, the line and the column named.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.importers.mapping import Mapping

CHUNK_ROWS = 100_000
MALFORMED_ROW = "malformed_row"


class ImportFailed(ValueError):
    """The export does not fit its mapping (or too many rows were refused); nothing was landed."""


@dataclass
class Chunk:
    lines: list[int] = field(default_factory=list)  # 1-based first line of each record
    raw: list[str] = field(default_factory=list)  # the record as it arrived
    values: dict[str, list] = field(default_factory=dict)  # their column -> values (None when absent)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)

    def __len__(self) -> int:
        return len(self.lines)


def read_chunks(path: Path, mapping: Mapping, mapping_path: Path) -> Iterator[Chunk]:
    """Chunks of the records of ``path``; the columns are those the mapping references."""
    wanted = mapping.referenced_columns()
    reader = _read_csv if mapping.format == "csv" else _read_jsonl
    yield from reader(Path(path), mapping, mapping_path, wanted)


def _physical_lines(handle, sink: list[str]) -> Iterator[str]:
    for line in handle:
        sink.append(line)
        yield line


def _read_csv(path: Path, mapping: Mapping, mapping_path: Path, wanted: dict[str, str]) -> Iterator[Chunk]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        consumed: list[str] = []
        rows = csv.reader(_physical_lines(handle, consumed), delimiter=mapping.separator,
                          skipinitialspace=mapping.separator == " ")
        names, first_line = _csv_names(path, rows, mapping, consumed)
        _check_columns(path, mapping_path, wanted, names, first_line, mapping.separator)
        index = {name: names.index(name) for name in wanted}
        chunk, line = _empty_chunk(wanted), first_line
        consumed.clear()
        for fields in rows:
            text = "".join(consumed).rstrip("\r\n")
            start, line = line + 1, line + len(consumed)
            consumed.clear()
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) != len(names) or "\ufffd" in text:
                why = "not UTF-8" if "\ufffd" in text else f"{len(fields)} fields, the header has {len(names)}"
                chunk.malformed.append((start, text, why))
                continue
            chunk.lines.append(start)
            chunk.raw.append(text)
            for name, position in index.items():
                chunk.values[name].append(fields[position])
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = _empty_chunk(wanted)
        yield chunk


def _csv_names(path: Path, rows, mapping: Mapping, consumed: list[str]) -> tuple[list[str], int]:
    """Field names and the number of lines they took (0 without a header)."""
    if not mapping.header:
        return list(mapping.column_names), 0
    try:
        header = next(rows)
    except StopIteration:
        raise ImportFailed(f"{path}: the file is empty; expected a header line naming the columns") from None
    return [name.strip() for name in header], len(consumed)


def _check_columns(path: Path, mapping_path: Path, wanted: dict[str, str], names: list[str], line: int,
                   separator: str) -> None:
    missing = [column for column in wanted if column not in names]
    if missing:
        where = f"line {line} (the header)" if line else "its column_names"
        raise ImportFailed(
            f"{path}: {where} has no column {missing[0]!r}, which {mapping_path} names in "
            f"'{wanted[missing[0]]}'" + (f" (also missing: {missing[1:]})" if missing[1:] else "")
            + f"; the file's columns are {names}; fix the mapping (or the separator, now "
            f"{separator!r})")


def _empty_chunk(wanted: dict[str, str]) -> Chunk:
    return Chunk(values={name: [] for name in wanted})


def _read_jsonl(path: Path, mapping: Mapping, mapping_path: Path, wanted: dict[str, str]) -> Iterator[Chunk]:
    seen: set[str] = set()
    first_record_line = 0
    chunk = _empty_chunk(wanted)
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            text, record, why = _parse_json(raw)
            if record is None:
                chunk.malformed.append((line, text, why))
                continue
            first_record_line = first_record_line or line
            seen.update(k for k in wanted if k in record)
            chunk.lines.append(line)
            chunk.raw.append(text)
            for name in wanted:
                value = record.get(name)
                chunk.values[name].append(value if value is None or isinstance(value, str) else json.dumps(value))
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = _empty_chunk(wanted)
    never = [column for column in wanted if column not in seen]
    if never and first_record_line:
        raise ImportFailed(
            f"{path}: no record has the key {never[0]!r} (first record at line {first_record_line}), which "
            f"{mapping_path} names in '{wanted[never[0]]}'; fix the mapping")
    yield chunk


def _parse_json(raw: bytes) -> tuple[str, dict | None, str]:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").rstrip("\r\n"), None, "not UTF-8"
    try:
        record = json.loads(text)
    except ValueError:
        return text, None, "not JSON"
    return (text, record, "") if isinstance(record, dict) else (text, None, "not a JSON object")
