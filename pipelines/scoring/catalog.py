"""The shop's catalog of the day (``raw/catalog/dt=<ds>/``): which items exist, are available and in stock.

Every ``*.parquet``, ``*.csv`` and ``*.jsonl`` file of the folder, in name order (names starting with
``.`` or ``_`` are skipped), with the columns ``item_id`` (required), ``available``, ``stock``, ``price``
and ``category`` (optional; others are ignored). Integer ids become their decimal text; ``available``
takes true/false or 1/0; ``stock`` a whole number; ``price`` a finite number. A catalog has one row per
item. Any file that breaks this fails with a ``CatalogError`` that names the file, the column and the
line (or both places of a duplicated id) and says what to do; the business rules
(``pipelines.scoring.rules``) read what this returns.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import columns as C
from pipelines import filesystem as fs

AVAILABLE, STOCK = "available", "stock"  # catalog-only columns
CATALOG_COLUMNS = (C.ITEM_ID, AVAILABLE, STOCK, C.PRICE, C.CATEGORY)  # item_id required, the others optional
_TYPES = {C.ITEM_ID: pa.string(), AVAILABLE: pa.bool_(), STOCK: pa.int64(), C.PRICE: pa.float64(),
          C.CATEGORY: pa.string()}
CATALOG_SUFFIXES = (".parquet", ".csv", ".jsonl")
_FIX = "fix the catalog export and rerun score_users (or set scoring.rules.catalog: false meanwhile)"
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class CatalogError(ValueError):
    """A catalog file cannot be used; the message names the file, the column (or id) and what to do."""


def read_catalog(folder: Path) -> pa.Table | None:
    """The day's catalog (``CATALOG_COLUMNS`` it has, typed) from every *.parquet, *.csv and *.jsonl file
    of ``folder``, in name order; None when the folder is absent or holds none. One row per item_id."""
    files = [path for path in fs.list_dir(folder) if Path(fs.name_of(path)).suffix in CATALOG_SUFFIXES]
    if not files:
        return None
    parts = [_typed_file(path) for path in files]
    table = pa.concat_tables([table for _, table, _ in parts], promote_options="default")
    table = table.select([name for name in CATALOG_COLUMNS if name in table.column_names])
    _refuse_duplicates(table.column(C.ITEM_ID), parts)
    return table


def _typed_file(path: Path) -> tuple[Path, pa.Table, Callable[[int], str]]:
    """(path, its catalog columns typed, row index -> where that row is in the file)."""
    suffix = Path(fs.name_of(path)).suffix
    columns, lines = _jsonl_columns(path) if suffix == ".jsonl" else (_arrow_columns(path, suffix), None)

    def where(row: int) -> str:  # CSV: line 1 is the header
        return f"line {lines[row]}" if lines is not None else (
            f"line {row + 2}" if suffix == ".csv" else f"row {row + 1}")

    if C.ITEM_ID not in columns:
        raise CatalogError(f"{path}: no {C.ITEM_ID} column (it has: {', '.join(columns) or 'no columns'}); "
                           f"every catalog file needs one row per item with its {C.ITEM_ID}; {_FIX}")
    typed = {name: _convert(path, name, values, where) for name, values in columns.items()
             if name in CATALOG_COLUMNS}
    return path, pa.table(typed), where


def _arrow_columns(path: Path, suffix: str) -> dict[str, Any]:
    import pyarrow.csv as pcsv

    try:
        if suffix == ".parquet":
            table = fs.read_parquet(path)
        else:  # every catalog column as text: _convert parses it, so errors name the column and line
            with fs.open_input(path) as stream:
                table = pcsv.read_csv(stream, convert_options=pcsv.ConvertOptions(
                    column_types={name: pa.string() for name in CATALOG_COLUMNS}, null_values=[""],
                    strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as err:
        raise CatalogError(f"{path}: cannot be read as {suffix[1:]} ({err}); {_FIX}") from None
    return {name: table.column(name).combine_chunks() for name in table.column_names}


def _jsonl_columns(path: Path) -> tuple[dict[str, list], list[int]]:
    """Column -> values (None where a record lacks the key), and each record's line number."""
    records, lines, number = [], [], 0
    data = fs.read_bytes(path)
    try:
        with io.StringIO(data.decode("utf-8"), newline=None) as handle:  # newlines as open() reads text
            for number, line in enumerate(handle, 1):
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"a JSON {type(record).__name__}")
                    records.append(record)
                    lines.append(number)
    except UnicodeDecodeError as err:
        number = data[:err.start].count(b"\n")
        raise CatalogError(f"{path}: not UTF-8 text (after line {number}); {_FIX}") from None
    except ValueError as err:  # json.JSONDecodeError included
        raise CatalogError(f"{path}: line {number} is not a JSON object ({err}); {_FIX}") from None
    names = list(dict.fromkeys(key for record in records for key in record)) if records else [C.ITEM_ID]
    return {name: [record.get(name) for record in records] for name in names}, lines


def _convert(path: Path, name: str, values: Any, where: Callable[[int], str]) -> pa.Array:
    """``values`` (an Arrow array or Python values) as the column's type; refuses what is not of it."""
    if isinstance(values, pa.Array):
        if values.type == _TYPES[name] and name in (AVAILABLE, STOCK):  # typed already, nothing to check
            return values
        values = values.to_pylist()
    parse, out = _PARSERS[name], []
    for row, value in enumerate(values):
        try:
            out.append(None if value is None else parse(value))
        except TypeError as err:
            raise CatalogError(f"{path}: column {name}, {where(row)}: {value!r} is not {err}; {_FIX}") from None
        if name == C.ITEM_ID and not out[-1]:
            raise CatalogError(f"{path}: column {name}, {where(row)}: empty; every row needs its {C.ITEM_ID}; "
                               f"{_FIX}")
    return pa.array(out, _TYPES[name])


def _id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # as the raw contract: a JSON integer id is its decimal text
    raise TypeError("a text or integer id")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise TypeError("a boolean (true or false)")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError("a number")
    try:
        number = float(value)
    except ValueError:
        raise TypeError("a number") from None
    if not math.isfinite(number):
        raise TypeError("a finite number")
    return number


def _whole(value: Any) -> int:
    number = _number(value)
    if not number.is_integer():
        raise TypeError("a whole number")
    return int(number)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    return _id(value)


_PARSERS = {C.ITEM_ID: _id, AVAILABLE: _boolean, STOCK: _whole, C.PRICE: _number, C.CATEGORY: _text}


def _refuse_duplicates(ids: pa.ChunkedArray, parts: list) -> None:
    codes = pc.dictionary_encode(ids.combine_chunks()).indices.to_numpy()  # ids numbered by first appearance
    if len(codes) < 2:
        return
    repeated = codes[1:] <= np.maximum.accumulate(codes)[:-1]  # a new id gets the next number
    if not repeated.any():
        return
    again = int(np.argmax(repeated)) + 1
    first = int(np.argmax(codes == codes[again]))
    starts = np.cumsum([0] + [table.num_rows for _, table, _ in parts])

    def locate(row: int) -> str:
        file = int(np.searchsorted(starts, row, side="right")) - 1
        path, _, where = parts[file]
        return f"{path} {where(row - int(starts[file]))}"

    raise CatalogError(f"{locate(again)}: {C.ITEM_ID} {ids[again].as_py()!r} again (first at {locate(first)}); "
                       "a catalog has one row per item: remove the duplicate and rerun score_users")
