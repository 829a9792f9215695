"""Remove people's rows from partitions and their values from text files, atomically, counting per request.

``Matcher`` knows every identifier of a batch of subjects and whose each one is. A Parquet file loses
the rows whose ``user_key``, ``user_id``, ``email``, ``customer_id`` or ``external_id`` is one of
theirs (or whose ``raw_line`` names them); a JSON Lines file loses the lines that carry one of their
ids or emails as a value (raw event files keep the line as a blank line, so the line numbers the
quarantine cites stay true); a text file (Data Docs, logs, reports, records) has each of their ids,
emails, IP addresses and user keys replaced by ``[erased]``.

A day's partition is rewritten whole, as every writer does (``pipelines.io``): under the partition's
writer lock (an erasure waits while a nightly task writes the day, and the other way round), into a
staging folder where the files it does not change are hard links, then swapped in. The old files are
deleted, so nothing of the person stays on disk; a crash leaves the old partition and a staging
folder the next writer removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines.io import PartitionBusy, partition_lock, publish_partition, staging_path_for, write_json_atomic
from pipelines.lake import COUNTS_FILE, PART_FILE

ERASED = "[erased]"
CUSTOMER_ID, EXTERNAL_ID = "customer_id", "external_id"
_TEXT_LIMIT_BYTES = 256 * 1024 * 1024
_BEFORE = r"(?<![\w.@+%-])"  # not inside a longer id, email or address
_AFTER = r"(?![\w@+%-]|\.\w)"  # a full stop that ends a sentence is not part of it


class Matcher:
    """The identifiers of some subjects (``privacy.subjects.Subject``), each mapped to its request id."""

    def __init__(self, subjects: Iterable):
        self.owner: dict[str, str] = {}
        self.ids: set[str] = set()
        self.emails: set[str] = set()
        self.keys: set[str] = set()
        tokens: set[str] = set()
        for subject in subjects:
            for kind, values in subject.identifiers().items():
                for value in values:
                    self.owner.setdefault(value.lower() if kind == "email" else value, subject.request_id)
                    tokens.add(value)
            self.ids |= subject.user_ids
            self.emails |= {email.lower() for email in subject.emails}
            self.keys |= subject.user_keys
        alternatives = "|".join(re.escape(token) for token in sorted(tokens, key=len, reverse=True))
        self._pattern = re.compile(rf"{_BEFORE}(?:{alternatives}){_AFTER}", re.IGNORECASE) \
            if tokens else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def owner_in_text(self, text: str | None) -> str | None:
        """The request id of the first identifier in ``text``, or None."""
        found = self._pattern.search(text) if self._pattern and text else None
        return self._owner_of(found.group(0)) if found else None

    def scrub(self, text: str) -> tuple[str, Counter]:
        """``text`` with every identifier replaced by ``[erased]``, and the replacements per request."""
        counts: Counter = Counter()

        def replace(found: re.Match) -> str:
            counts[self._owner_of(found.group(0))] += 1
            return ERASED

        return (self._pattern.sub(replace, text), counts) if self._pattern else (text, counts)

    def _owner_of(self, token: str) -> str:
        return self.owner.get(token) or self.owner.get(token.lower()) or next(
            (owner for value, owner in self.owner.items() if value.lower() == token.lower()), "unknown")

    def value_owner(self, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        return self.owner.get(value) if value in self.ids or value in self.keys else \
            self.owner.get(value.lower()) if value.lower() in self.emails else None

    def columns_of(self, schema: pa.Schema) -> dict[str, set[str]]:
        """The columns of ``schema`` that can hold the subjects' identifiers, with the values to look for."""
        wanted = {C.USER_KEY: self.keys, C.USER_ID: self.ids, CUSTOMER_ID: self.ids, EXTERNAL_ID: self.ids,
                  C.EMAIL: self.emails}
        return {name: values for name, values in wanted.items() if name in schema.names}


def filter_parquet(path: Path, matcher: Matcher) -> tuple[pa.Table | None, Counter]:
    """The file's rows less the subjects' (None when it holds none of them), and the rows removed per request."""
    schema = fs.parquet_file(path).schema_arrow
    columns = matcher.columns_of(schema)
    text_column = C.RAW_LINE if C.RAW_LINE in schema.names else None
    if not columns and not text_column:
        return None, Counter()
    probe = fs.read_parquet(path, columns=[*columns, *([text_column] if text_column else [])])
    hit = pa.array([False] * probe.num_rows, pa.bool_())
    for name, values in columns.items():
        column = probe.column(name)
        if not pa.types.is_string(column.type):  # an all-null column is typed null
            column = column.cast(pa.string())
        column = pc.utf8_lower(column) if name == C.EMAIL else column
        hit = pc.or_kleene(hit, pc.fill_null(pc.is_in(column, value_set=pa.array(sorted(values), pa.string())), False))
    if not text_column and not pc.any(hit).as_py():
        return None, Counter()
    owners = [_row_owner(row, matcher, text_column) for row in probe.to_pylist()]
    removed = Counter(owner for owner in owners if owner)
    if not removed:
        return None, removed
    table = fs.read_parquet(path)
    keep = pa.array([owner is None for owner in owners], pa.bool_())
    return table.filter(keep).replace_schema_metadata(table.schema.metadata), removed


def _row_owner(row: dict, matcher: Matcher, text_column: str | None) -> str | None:
    for name, value in row.items():
        if name != text_column:
            owner = matcher.value_owner(value.lower() if name == C.EMAIL and isinstance(value, str) else value)
            if owner:
                return owner
    return matcher.owner_in_text(row.get(text_column)) if text_column else None


def filter_json_lines(data: bytes, matcher: Matcher, blank: bool) -> tuple[bytes | None, Counter]:
    """The lines less the subjects' (blank lines instead when ``blank``), and the removals per request.

    A line whose object has one of their ids or emails as a field's value goes; a list that holds them
    (an audience's ``usersList``) loses them, and the lists beside it of the same length (its ``scores``)
    lose the same positions. A line that is not JSON goes when its text names them.
    """
    removed: Counter = Counter()
    lines: list[bytes | None] = data.split(b"\n")
    for number, raw in enumerate(lines):
        if not raw or not raw.strip():
            continue
        text = raw.decode("utf-8", errors="replace")
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            owner, changed = _strip_record(record, matcher, removed)
            if owner is None and not changed:
                continue
            if owner is None:
                lines[number] = json.dumps(record, sort_keys=False).encode()
                continue
        else:
            owner = matcher.owner_in_text(text)
            if owner is None:
                continue
        removed[owner] += 1
        lines[number] = b"" if blank else None
    if not removed:
        return None, removed
    return b"\n".join(line for line in lines if line is not None), removed


def _strip_record(record: dict, matcher: Matcher, removed: Counter) -> tuple[str | None, bool]:
    """(owner, changed): the owner of a field's value (the whole record is theirs), or lists stripped."""
    changed = False
    for value in record.values():
        owner = matcher.value_owner(value)
        if owner:
            return owner, False
        if isinstance(value, dict):
            owner, inner = _strip_record(value, matcher, removed)
            if owner:
                return owner, False
            changed |= inner
    for value in list(record.values()):
        if not isinstance(value, list):
            continue
        owners = [matcher.value_owner(item) for item in value]
        if not any(owners):
            continue
        drop = {index for index, owner in enumerate(owners) if owner}
        for other, values in list(record.items()):
            if isinstance(values, list) and len(values) == len(value):
                record[other] = [item for index, item in enumerate(values) if index not in drop]
        removed.update(owner for owner in owners if owner)
        changed = True
    return None, changed


def scrub_text_bytes(data: bytes, matcher: Matcher) -> tuple[bytes | None, Counter]:
    """Text with the subjects' identifiers replaced; None when there is none (or the file is binary)."""
    if len(data) > _TEXT_LIMIT_BYTES or b"\x00" in data[:8192]:
        return None, Counter()
    text = data.decode("utf-8", errors="surrogateescape")
    scrubbed, counts = matcher.scrub(text)
    return (scrubbed.encode("utf-8", errors="surrogateescape"), counts) if counts else (None, counts)


def rewrite_file_bytes(path: Path, matcher: Matcher, blank_lines: bool = False) -> tuple[bytes | None, Counter]:
    """What ``path`` becomes without the subjects (None: unchanged), by its kind."""
    suffix = Path(fs.name_of(path)).suffix
    if suffix == ".parquet":
        table, removed = filter_parquet(path, matcher)
        if table is None:
            return None, removed
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **_same_encoding(path))
        return sink.getvalue().to_pybytes(), removed
    data = fs.read_bytes(path)
    if suffix == ".jsonl":
        return filter_json_lines(data, matcher, blank_lines)
    return scrub_text_bytes(data, matcher)


def _same_encoding(path: Path) -> dict:
    """Write options that keep the source's physical types: Spark writes timestamps as INT96 by default,
    and reads a folder whose files disagree on it as an error."""
    schema = fs.parquet_file(path).schema
    int96 = any(schema.column(i).physical_type == "INT96" for i in range(len(schema)))
    return {"use_deprecated_int96_timestamps": True} if int96 else {"coerce_timestamps": "us",
                                                                    "allow_truncated_timestamps": False}


def rewrite_partition(target: Path, matcher: Matcher, *, blank_lines: bool = False,
                      wait_seconds: float = 600.0) -> Counter:
    """Rewrite one partition without the subjects (see the module doc); what was removed per request."""
    target = Path(target)
    if not target.is_dir() or not matcher:
        return Counter()
    with _writer_lock(target, wait_seconds):
        staging = staging_path_for(target)
        removed: Counter = Counter()
        rows_removed_from_part = 0
        try:
            files = [path for path in sorted(target.rglob("*")) if path.is_file()]
            changed_files = set()
            for path in (path for path in files if not path.name.endswith(".crc")):
                destination = staging / path.relative_to(target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                changed, counts = rewrite_file_bytes(path, matcher, blank_lines)
                if changed is None:
                    _link_or_copy(path, destination)
                    continue
                fs.write_bytes(destination, changed)
                changed_files.add(path)
                removed.update(counts)
                if path.name == PART_FILE:
                    rows_removed_from_part += sum(counts.values())
            for path in (path for path in files if path.name.endswith(".crc")):
                # Spark's .<file>.crc: kept for unchanged files; left out for changed ones (Hadoop then skips it)
                if path.with_name(path.name[1:].removesuffix(".crc")) not in changed_files:
                    destination = staging / path.relative_to(target)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(path, destination)
            for folder in (path for path in target.rglob("*") if path.is_dir()):
                (staging / folder.relative_to(target)).mkdir(parents=True, exist_ok=True)
            if not removed:
                shutil.rmtree(staging, ignore_errors=True)
                return removed
            _adjust_counts(staging / COUNTS_FILE, rows_removed_from_part)
            publish_partition(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return removed


def rewrite_single_file(path: Path, matcher: Matcher, blank_lines: bool = False) -> Counter:
    """One file outside a day partition (an import's quarantine, a log, a Data Docs page), replaced atomically."""
    changed, counts = rewrite_file_bytes(path, matcher, blank_lines)
    if changed is None:
        return Counter()
    tmp = fs.join(fs.parent(path), f".{fs.name_of(path)}.erasure.tmp")
    fs.write_bytes(tmp, changed)
    fs.move(tmp, path)
    return counts


def scrub_tree(root: Path, matcher: Matcher, skip: Iterable[Path] = ()) -> Counter:
    """Every text file under ``root`` (not under ``skip``, not Parquet or SQLite) with identifiers replaced."""
    root, skipped = Path(root), [Path(path) for path in skip]
    counts: Counter = Counter()
    if not root.is_dir() or not matcher:
        return counts
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.suffix in (".parquet", ".db", ".crc") or \
                any(path.is_relative_to(other) for other in skipped):
            continue
        counts.update(rewrite_single_file(path, matcher))
    return counts


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)  # writers replace files, never edit them: sharing the inode is safe
    except OSError:
        shutil.copy2(source, destination)


def _adjust_counts(path: Path, rows_removed: int) -> None:
    """A validated partition's ``_counts.json``: the erased rows leave rows_accepted and rows_in."""
    if not fs.exists(path) or not rows_removed:
        return
    counts = fs.read_json(path)
    counts["rows_accepted"] = counts.get("rows_accepted", 0) - rows_removed
    counts["rows_in"] = counts.get("rows_in", 0) - rows_removed
    counts["rows_erased"] = counts.get("rows_erased", 0) + rows_removed
    write_json_atomic(path, counts)


class _writer_lock:
    """``partition_lock``, waiting while another writer (a nightly task) holds it, up to ``wait_seconds``."""

    def __init__(self, target: Path, wait_seconds: float):
        self.target, self.wait_seconds = target, wait_seconds
        self._lock = None

    def __enter__(self):
        deadline = time.monotonic() + self.wait_seconds
        while True:
            self._lock = partition_lock(self.target)
            try:
                return self._lock.__enter__()
            except PartitionBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)
