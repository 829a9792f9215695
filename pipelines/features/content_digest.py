"""An order-free content digest of Arrow tables, computed batch by batch in bounded memory.

Each row gets a 64-bit hash of all its cells (position-aware inside lists and strings, null-aware),
built from vectorised numpy on the Arrow buffers; the table's digest is SHA-256 of the schema, the
row count and two wrapping sums of mixed row hashes. So it does not depend on row order, file
names or how the rows are split into batches or files: a partition rewritten with its rows in
another order keeps its digest, and any changed cell changes it (up to a 2**-128 collision).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0xD6E8FEB86659FD93)
_SECOND = np.uint64(0xA0761D6478BD642F)


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 values (wrapping arithmetic)."""
    x = values.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _segments(element_hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """uint64[n]: the hash of each run element_hashes[offsets[i]:offsets[i+1]], aware of position and length."""
    lengths = np.diff(offsets).astype(np.uint64)
    if len(element_hashes):
        starts = np.repeat(offsets[:-1], np.diff(offsets))
        positions = (np.arange(len(element_hashes), dtype=np.int64) - starts).astype(np.uint64)
        summed = np.concatenate([np.zeros(1, np.uint64),
                                 np.cumsum(_mix(element_hashes + positions * _GOLDEN), dtype=np.uint64)])
        runs = summed[offsets[1:]] - summed[offsets[:-1]]
    else:
        runs = np.zeros(len(lengths), np.uint64)
    return _mix(runs + _mix(lengths))


def element_hashes(array: pa.Array) -> np.ndarray:
    """uint64[len(array)]: one hash per element of a numeric, temporal, string, binary or list array."""
    kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        offsets = np.asarray(array.offsets if not pa.types.is_fixed_size_list(kind)
                             else np.arange(len(array) + 1) * kind.list_size, dtype=np.int64)
        if pa.types.is_fixed_size_list(kind):
            offsets = offsets + array.offset * kind.list_size
        child = array.values.slice(offsets[0], offsets[-1] - offsets[0])
        hashes = _segments(element_hashes(child), offsets - offsets[0])
    elif pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind) \
            or pa.types.is_large_binary(kind):
        large = array.cast(pa.large_binary())
        offsets = np.frombuffer(large.buffers()[1], np.int64)[large.offset : large.offset + len(large) + 1]
        data = np.frombuffer(large.buffers()[2], np.uint8) if large.buffers()[2] is not None else np.zeros(0, np.uint8)
        hashes = _segments(data[offsets[0] : offsets[-1]].astype(np.uint64), offsets - offsets[0])
    elif pa.types.is_floating(kind):
        hashes = _mix(pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).view(np.uint64))
    elif pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_temporal(kind):
        as_int = array.cast(pa.int64()) if not pa.types.is_temporal(kind) else array.view(_int_of(kind))
        hashes = _mix(pc.fill_null(as_int.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).view(np.uint64))
    else:
        raise TypeError(f"content digest: column type {kind} is not supported; add it to element_hashes.")
    if array.null_count:
        hashes = np.where(array.is_null().to_numpy(zero_copy_only=False), _NULL, hashes)
    return hashes


def _int_of(kind: pa.DataType) -> pa.DataType:
    return pa.int32() if kind.bit_width == 32 else pa.int64()


def row_hashes(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """uint64[rows]: each row's hash over its columns in schema order."""
    rows = np.zeros(batch.num_rows, np.uint64)
    for index, column in enumerate(batch.columns):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        cells = np.concatenate([element_hashes(chunk) for chunk in chunks]) if chunks else rows
        rows = _mix(rows * _GOLDEN + cells + np.uint64(index))
    return rows


class ContentDigest:
    """Accumulates batches of one table; ``hexdigest`` is the same for any row order or batching."""

    def __init__(self, schema: pa.Schema):
        self._schema = schema
        self._rows, self._first, self._second = 0, 0, 0  # the sums wrap at 2**64

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        if not batch.schema.equals(self._schema):
            raise ValueError(f"content digest: batch schema {batch.schema} is not the table's {self._schema}")
        hashes = row_hashes(batch)
        self._rows += len(hashes)
        self._first = (self._first + int(np.sum(_mix(hashes), dtype=np.uint64))) % 2**64
        self._second = (self._second + int(np.sum(_mix(hashes ^ _SECOND), dtype=np.uint64))) % 2**64

    def hexdigest(self) -> str:
        sha = hashlib.sha256(self._schema.to_string(show_field_metadata=False, show_schema_metadata=False).encode())
        sha.update(f"{self._rows}:{self._first}:{self._second}".encode())
        return sha.hexdigest()


def tables_digest(tables: Iterable[tuple[pa.Schema, Iterable[pa.RecordBatch | pa.Table]]]) -> str:
    """A 16-hex digest of several tables, each given as (schema, its batches)."""
    sha = hashlib.sha256()
    for schema, batches in tables:
        digest = ContentDigest(schema)
        for batch in batches:
            digest.update(batch)
        sha.update(digest.hexdigest().encode())
    return sha.hexdigest()[:16]
