"""Find identifiers anywhere under a folder: Parquet read column by column, every other file as bytes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq


def scan_for(root: Path, identifiers: set[str]) -> Counter:
    """``{file: hits}`` of files under ``root`` holding any of ``identifiers`` (case-insensitive)."""
    wanted = [value.lower().encode() for value in identifiers if value]
    hits: Counter = Counter()
    for path in Path(root).rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.suffix == ".parquet":
            text = "\n".join(str(value) for column in pq.read_table(path).columns
                             for value in column.to_pylist()).lower().encode()
        else:
            text = path.read_bytes().lower()
        found = sum(text.count(value) for value in wanted)
        if found:
            hits[str(path.relative_to(root))] += found
    return hits
