"""Property tests (Hypothesis) of the raw validator and the importer on arbitrary input.

Whatever lines arrive, validation never raises (but for a day with no line at all), the counts
reconcile with the file (lines = accepted + quarantined + blank), and every accepted row satisfies
the raw contract. Whatever rows an export has, the importer lands or refuses them, never raises
anything but ``ImportFailed``, and reconciles (rows in = landed + quarantined).
"""

from __future__ import annotations

import csv
import json
import math
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import columns as C
from pipelines import lake
from pipelines.importers import ImportFailed, import_file, load_mapping
from pipelines.lake import partition_path
from pipelines.validation import RawDataError, validate_raw_events
from pipelines.validation.raw_events_suite import CONTROL_CHARACTERS, RawLimits
from tests.validation.hostile import BASE

DS = "2026-11-27"
START = datetime(2026, 11, 27, tzinfo=UTC)
LIMITS = RawLimits(max_event_id_length=16, max_id_length=24, max_text_length=40, max_price=1000.0)
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
fields = st.sampled_from([*C.RAW_COLUMNS, "unknown_field"])
events = st.builds(lambda changes, n: json.dumps({**BASE, "event_id": f"p{n}", **changes}, allow_nan=True).encode(),
                   st.dictionaries(fields, json_values, max_size=4), st.integers(0, 5))
lines = st.lists(events | st.binary(max_size=40) | st.text(max_size=40).map(str.encode), min_size=1, max_size=12)


def _file_lines(data: bytes) -> int:
    parts = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    return len(parts) - (1 if parts[-1] == b"" else 0)


def _satisfies_contract(row: dict) -> bool:
    for column in (*C.ID_COLUMNS, *C.TEXT_COLUMNS):
        value = row[column]
        if value is not None and (not isinstance(value, str) or len(value) > LIMITS.max_length(column)):
            return False
    if any(row[c] is not None and re.search(CONTROL_CHARACTERS, row[c]) for c in C.NO_CONTROL_CHARACTER_COLUMNS):
        return False
    price = row[C.PRICE]
    if price is not None and not (math.isfinite(price) and 0 <= price <= LIMITS.max_price):
        return False
    return row[C.EVENT_TYPE] in C.EVENT_TYPES and START - timedelta(days=1) <= row[C.EVENT_TIME] < START + \
        timedelta(days=1) and all(row[c] is not None for c in C.REQUIRED_COLUMNS)


@SLOW
@given(lines=lines, bom=st.booleans())
def test_any_lines_reconcile_and_accepted_rows_satisfy_the_contract(lines, bom):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        raw = partition_path(root / "raw", DS)
        raw.mkdir(parents=True)
        data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n"
        (raw / "events.jsonl").write_bytes(data)
        try:
            result = validate_raw_events(raw, DS, START - timedelta(days=1), START + timedelta(days=1),
                                         partition_path(root / "validated", DS),
                                         partition_path(root / "quarantine", DS), root / "gx", 1.0, LIMITS)
        except RawDataError as err:  # only a day of blank lines is refused outright
            assert "zero rows" in str(err) and not data.removeprefix(b"\xef\xbb\xbf").strip()
            return
        assert result.rows_in + result.blank_lines == _file_lines(data)
        assert result.rows_in == result.rows_accepted + result.rows_quarantined
        quarantined = pq.read_table(partition_path(root / "quarantine", DS) / lake.PART_FILE)
        assert quarantined.num_rows == result.rows_quarantined
        assert all(quarantined.column(C.QUARANTINE_REASON).to_pylist())  # every refused row says why
        accepted = pq.read_table(partition_path(root / "validated", DS) / lake.PART_FILE).to_pylist()
        assert len(accepted) == result.rows_accepted
        assert all(_satisfies_contract(row) for row in accepted), accepted


def _validate_in_parts(root: Path, chunk_rows: int | None):
    out = root / f"parts-{chunk_rows}"
    try:
        result = validate_raw_events(partition_path(root / "raw", DS), DS, START - timedelta(days=1),
                                     START + timedelta(days=1), partition_path(out / "validated", DS),
                                     partition_path(out / "quarantine", DS), root / "gx", 1.0, LIMITS,
                                     chunk_rows=chunk_rows)
    except RawDataError as err:
        return str(err)
    tables = [pq.read_table(partition_path(out / zone, DS) / lake.PART_FILE).to_pylist()
              for zone in ("validated", "quarantine")]
    counts = {k: v for k, v in result.to_dict().items() if k not in ("parts", "data_docs_path")}
    return counts, tables


@SLOW
@given(lines=lines, chunk_rows=st.integers(1, 4))
def test_a_day_read_in_parts_gives_what_the_whole_day_gives(lines, chunk_rows):
    """Any lines (event ids repeat across parts), any part size: the same rows, reasons and counts."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        raw = partition_path(root / "raw", DS)
        raw.mkdir(parents=True)
        half = len(lines) // 2  # two files, so a part can span them
        (raw / "events-0.jsonl").write_bytes(b"\n".join(lines[:half]) + b"\n" if half else b"")
        (raw / "events-1.jsonl").write_bytes(b"\n".join(lines[half:]) + b"\n")
        assert _validate_in_parts(root, chunk_rows) == _validate_in_parts(root, None)


MAPPING = """
source: prop
separator: ","
timezone: UTC
event_time: {column: ts, format: iso8601}
event_type: {column: kind, values: {view: product_view, buy: purchase}}
user_id: customer
item_id: sku
price: amount
max_reject_rate: 1.0
"""
cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
rows = st.lists(st.tuples(st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27 10:00", "", "garbage"]) | cells,
                          st.sampled_from(["view", "buy", "click"]) | cells, cells, cells,
                          st.sampled_from(["1.5", "-3", "nan", "1e400"]) | cells), min_size=1, max_size=12)


@SLOW
@given(rows=rows)
def test_any_export_lands_or_is_refused_and_reconciles(rows):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "prop.yaml").write_text(MAPPING)
        with (root / "export.csv").open("w", encoding="utf-8", newline="") as export:  # CSV quoting, as exporters do
            writer = csv.writer(export, quoting=csv.QUOTE_ALL)
            writer.writerow(["ts", "kind", "customer", "sku", "amount"])
            writer.writerows(rows)
        try:
            result = import_file(load_mapping(root / "prop.yaml"), root / "prop.yaml", root / "export.csv",
                                 root / "raw", root / "imports")
        except ImportFailed as err:
            assert "nothing" in str(err).lower() or "no rows" in str(err)
            assert not list((root / "raw").glob("dt=*/*.jsonl"))  # a failed import lands nothing
            return
        assert result.rows_in == result.landed + result.quarantined == len(rows)
        landed = sum(path.read_bytes().count(b"\n") for path in (root / "raw").glob("dt=*/*.jsonl"))  # JSON Lines: \n only
        assert landed == result.landed


def test_an_export_with_quotes_and_newlines_in_cells_reconciles():
    """The case Hypothesis found: a lone quote in a cell (written as CSV quotes it) is one row, not two."""
    rows = [("2026-11-27T10:00:00Z", "view", "", "", "1.5"), ("2026-11-27T10:00:00Z", "view", "", "", '"'),
            ("2026-11-27T10:00:00Z", "buy", "c\n1", "s,1", "1.5")]
    test_any_export_lands_or_is_refused_and_reconciles.hypothesis.inner_test(rows=rows)
