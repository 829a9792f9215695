"""Raw-event validation: tiny hand-written JSON Lines days, clean and broken, through the real GX."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import lake
from pipelines.columns import (
    EVENT_TIME,
    PRICE,
    QUARANTINE_REASON,
    RAW_COLUMNS,
    RAW_LINE,
    SOURCE_FILE,
    SOURCE_LINE,
)
from pipelines.lake import partition_path
from pipelines.validation import RawDataError, RawValidationResult, validate_raw_events

DS = "2026-11-27"
START = datetime(2026, 11, 27, tzinfo=UTC)
END = START + timedelta(days=1)


def _event(number: int, **fields) -> dict:
    event = {
        "event_id": f"e{number}", "event_time": f"2026-11-27T10:00:0{number % 10}.000Z", "user_id": "u1",
        "session_id": "s1", "event_type": "product_view", "item_id": "i1", "category": "books", "price": 9.5,
        "campaign": None, "utm_source": None, "device": "mobile", "search_query": None,
        "email": "ada@example.com", "ip_address": "10.0.0.1", "user_agent": "Mozilla/5.0",
    }
    return {**event, **fields}


def _land(root: Path, lines: list, name: str = "events-00000.jsonl") -> Path:
    """Write one raw file; dicts become JSON lines, strings are written as they are."""
    partition = partition_path(root / "raw", DS)
    partition.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (partition / name).write_text(text, encoding="utf-8")
    return partition


def _validate(root: Path, max_failure_rate: float = 1.0) -> RawValidationResult:
    return validate_raw_events(
        raw_partition=partition_path(root / "raw", DS), ds=DS, interval_start=START, interval_end=END,
        validated_partition=partition_path(root / "validated", DS),
        quarantine_partition=partition_path(root / "quarantine", DS),
        gx_project_dir=root / "gx", max_failure_rate=max_failure_rate)


def _quarantine(root: Path) -> list[dict]:
    return pq.read_table(partition_path(root / "quarantine", DS) / lake.PART_FILE).to_pylist()


def _validated(root: Path) -> pa.Table:
    return pq.read_table(partition_path(root / "validated", DS) / lake.PART_FILE)


def _reasons(root: Path) -> dict[str, str]:
    return {row["event_id"]: row[QUARANTINE_REASON] for row in _quarantine(root)}


def test_clean_day_is_accepted_typed_and_reconciled(tmp_path):
    _land(tmp_path, [_event(1), _event(2, event_type="search", item_id=None, price=None, search_query="x"),
                     _event(3, email=None)])
    result = _validate(tmp_path, max_failure_rate=0.0)
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (3, 3, 0)
    assert result.success and result.reasons == {} and result.failure_rate == 0.0
    assert Path(result.data_docs_path).is_file() and result.data_docs_path.endswith(".html")
    table = _validated(tmp_path)
    assert table.column_names == list(RAW_COLUMNS)
    assert table.schema.field(EVENT_TIME).type == pa.timestamp("us", tz="UTC")
    assert table.schema.field(PRICE).type == pa.float64()
    assert table.column(PRICE).to_pylist() == [9.5, None, 9.5]  # a missing price is null, never NaN
    assert table.column("email").to_pylist() == ["ada@example.com", "ada@example.com", None]
    counts = json.loads((partition_path(tmp_path / "validated", DS) / "_counts.json").read_text())
    assert counts == result.to_dict()
    assert _quarantine(tmp_path) == []  # written anyway, with its schema, so counts can be read


def test_malformed_lines_are_quarantined_with_their_text_and_position(tmp_path):
    _land(tmp_path, [_event(1), '{"event_id": "e2", oops', "[1, 2]", "", _event(3)])
    result = _validate(tmp_path)
    assert result.reasons == {"malformed_json": 2}
    rows = _quarantine(tmp_path)
    assert [(r[SOURCE_LINE], r[RAW_LINE]) for r in rows] == [(2, '{"event_id": "e2", oops'), (3, "[1, 2]")]
    assert {r[SOURCE_FILE] for r in rows} == {f"dt={DS}/events-00000.jsonl"}
    assert result.rows_accepted == 2


BAD_ROWS = [  # (fields that break a clean event, the quarantine reason GX must give)
    ({"event_type": "page_view"}, "unknown_event_type"),
    ({"user_id": None}, "missing_user_id"),
    ({"user_id": "  "}, "missing_user_id"),
    ({"item_id": None}, "missing_item_id"),
    ({"event_time": "2026-11-28T00:00:00Z"}, "event_time_outside_interval"),
    ({"event_time": "2026-11-26T23:59:59+00:00"}, "event_time_outside_interval"),
    ({"event_time": "yesterday"}, "unparseable_event_time"),
    ({"event_time": "2026-11-27T10:00:00"}, "unparseable_event_time"),  # no UTC offset
    ({"price": -1.0}, "negative_price"),
    ({"price": "cheap"}, "price_not_a_number"),
]


def test_each_bad_row_is_quarantined_with_its_reason(tmp_path):
    bad = [_event(10 + n, **fields) for n, (fields, _) in enumerate(BAD_ROWS)]
    _land(tmp_path, [_event(1), *bad, _event(2, event_type="search", item_id=None, price=None)])
    result = _validate(tmp_path)
    assert _reasons(tmp_path) == {f"e{10 + n}": reason for n, (_, reason) in enumerate(BAD_ROWS)}
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (12, 2, 10)
    assert result.reasons["missing_user_id"] == 2 and result.failure_rate == pytest.approx(10 / 12, abs=1e-6)
    assert _validated(tmp_path).column("event_id").to_pylist() == ["e1", "e2"]


def test_a_missing_key_counts_as_a_missing_value(tmp_path):
    event = _event(2)
    del event["session_id"]
    _land(tmp_path, [_event(1), event])
    _validate(tmp_path)
    assert _reasons(tmp_path) == {"e2": "missing_session_id"}


def test_offsets_other_than_utc_are_converted(tmp_path):
    _land(tmp_path, [_event(1, event_time="2026-11-27T03:30:00+02:00")])
    _validate(tmp_path, max_failure_rate=0.0)
    assert _validated(tmp_path).column(EVENT_TIME).to_pylist() == [datetime(2026, 11, 27, 1, 30, tzinfo=UTC)]


def test_a_row_failing_several_checks_gets_every_reason(tmp_path):
    _land(tmp_path, [_event(1, user_id=None, event_type="page_view", price=-2)])
    _validate(tmp_path)
    assert _reasons(tmp_path) == {"e1": "missing_user_id;unknown_event_type;negative_price"}


def test_duplicate_event_ids_after_the_first_clean_copy_are_quarantined(tmp_path):
    _land(tmp_path, [_event(1), _event(1, user_id="u2"), _event(2, price=-1), _event(2), _event(2), _event(3)])
    result = _validate(tmp_path)
    rows = _quarantine(tmp_path)
    assert [(r["event_id"], r[SOURCE_LINE], r[QUARANTINE_REASON]) for r in rows] == [
        ("e1", 2, "duplicate_event_id"),
        ("e2", 3, "negative_price;duplicate_event_id"),
        ("e2", 5, "duplicate_event_id"),
    ]
    assert result.reasons == {"duplicate_event_id": 3, "negative_price": 1}
    assert _validated(tmp_path).column("event_id").to_pylist() == ["e1", "e2", "e3"]


def test_duplicates_are_decided_across_the_parts_a_day_is_read_in(tmp_path):
    # e1: a failing first copy in part 1, its clean copy in part 3; e2: a clean copy in each part.
    _land(tmp_path, [_event(1, price=-1), _event(2), _event(3), _event(2), _event(1), _event(2)])
    result = validate_raw_events(
        raw_partition=partition_path(tmp_path / "raw", DS), ds=DS, interval_start=START, interval_end=END,
        validated_partition=partition_path(tmp_path / "validated", DS),
        quarantine_partition=partition_path(tmp_path / "quarantine", DS),
        gx_project_dir=tmp_path / "gx", max_failure_rate=1.0, chunk_rows=2)
    assert result.parts == 3
    assert [(r["event_id"], r[SOURCE_LINE], r[QUARANTINE_REASON]) for r in _quarantine(tmp_path)] == [
        ("e1", 1, "negative_price;duplicate_event_id"),
        ("e2", 4, "duplicate_event_id"),
        ("e2", 6, "duplicate_event_id"),
    ]
    validated = _validated(tmp_path)
    assert validated.column("event_id").to_pylist() == ["e2", "e3", "e1"]
    assert pq.ParquetFile(partition_path(tmp_path / "validated", DS) / lake.PART_FILE).num_row_groups == 3
    assert result.rows_in == 6 and result.rows_accepted == 3


def test_parts_checked_in_worker_processes_give_what_one_process_gives(tmp_path):
    """Two spawned workers, parts of three lines, duplicates across parts: the same rows, reasons and counts."""
    lines = [_event(1, price=-1), _event(2), _event(3), _event(2), "not json", _event(1), _event(4, user_id=42),
             "", _event(5, event_type="nope"), _event(2), _event(6, price=float("nan")), _event(7, item_id=4.5)]
    _land(tmp_path, lines[:7])
    _land(tmp_path, lines[7:], name="events-00001.jsonl")  # a part spans the two files
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers-{workers}"
        result = validate_raw_events(
            raw_partition=partition_path(tmp_path / "raw", DS), ds=DS, interval_start=START, interval_end=END,
            validated_partition=partition_path(out / "validated", DS),
            quarantine_partition=partition_path(out / "quarantine", DS),
            gx_project_dir=out / "gx", max_failure_rate=1.0, chunk_rows=3, workers=workers)
        outputs[workers] = ({k: v for k, v in result.to_dict().items() if k != "data_docs_path"},
                            _validated(out).to_pylist(), _quarantine(out))
        docs = out / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
        assert docs.is_file() and f"{DS} part {result.parts}" in docs.read_text()  # every part is on the index
    assert outputs[2] == outputs[1]
    counts, validated, quarantine = outputs[2]
    assert counts["parts"] == 4 and counts["blank_lines"] == 1
    assert counts["rows_in"] == 11 == counts["rows_accepted"] + counts["rows_quarantined"]
    assert [row["event_id"] for row in validated] == ["e2", "e3", "e1", "e4"]
    assert {row[QUARANTINE_REASON] for row in quarantine} >= {"malformed_json", "duplicate_event_id",
                                                               "negative_price;duplicate_event_id"}


def test_a_worker_count_below_one_is_refused_with_the_setting_to_fix(tmp_path):
    _land(tmp_path, [_event(1)])
    with pytest.raises(ValueError, match="validation.workers"):
        validate_raw_events(
            raw_partition=partition_path(tmp_path / "raw", DS), ds=DS, interval_start=START, interval_end=END,
            validated_partition=partition_path(tmp_path / "validated", DS),
            quarantine_partition=partition_path(tmp_path / "quarantine", DS),
            gx_project_dir=tmp_path / "gx", max_failure_rate=1.0, workers=0)


def test_quarantine_keeps_every_field_as_text(tmp_path):
    _land(tmp_path, [_event(1, price=-3, user_id=42)])
    _validate(tmp_path)
    [row] = _quarantine(tmp_path)
    assert (row[PRICE], row["user_id"], row[SOURCE_LINE]) == ("-3", "42", 1)
    assert json.loads(row[RAW_LINE])["price"] == -3


def test_failure_rate_above_the_threshold_raises_with_counts_and_docs(tmp_path):
    _land(tmp_path, [_event(1), _event(2, user_id=None), _event(3, event_type="nope"), "not json"])
    with pytest.raises(RawDataError) as raised:
        _validate(tmp_path, max_failure_rate=0.25)
    message = str(raised.value)
    assert str(partition_path(tmp_path / "raw", DS)) in message
    assert "rows_in=4 accepted=1 quarantined=3" in message and "75.00%" in message
    assert "missing_user_id=1" in message and "malformed_json=1" in message
    docs = message.split("see the data docs at ")[1].split("; ")[0]
    assert Path(docs).is_file()
    assert len(_quarantine(tmp_path)) == 3  # written so people can look
    assert not partition_path(tmp_path / "validated", DS).exists()  # nothing goes further


def test_missing_partition_raises_and_says_what_to_do(tmp_path):
    with pytest.raises(RawDataError, match=r"dt=2026-11-27: partition folder does not exist; .*land it and rerun"):
        _validate(tmp_path)


def test_partition_without_jsonl_files_raises(tmp_path):
    partition = partition_path(tmp_path / "raw", DS)
    partition.mkdir(parents=True)
    (partition / "_SUCCESS").write_text("")
    with pytest.raises(RawDataError, match=r"dt=2026-11-27: no \*\.jsonl files found"):
        _validate(tmp_path)


def test_empty_partition_raises(tmp_path):
    _land(tmp_path, ["", "  "])
    with pytest.raises(RawDataError, match=r"dt=2026-11-27: 1 \*\.jsonl file\(s\) but zero rows"):
        _validate(tmp_path)


def test_rerun_replaces_rather_than_appends(tmp_path):
    _land(tmp_path, [_event(1), _event(2, price=-1), _event(3)])
    _validate(tmp_path)
    _land(tmp_path, [_event(1), _event(2), _event(3), _event(4)])
    result = _validate(tmp_path)
    assert (result.rows_in, result.rows_accepted, result.rows_quarantined) == (4, 4, 0)
    assert _validated(tmp_path).num_rows == 4 and _quarantine(tmp_path) == []
    assert len(list(partition_path(tmp_path / "validated", DS).iterdir())) == 2  # parquet + _counts.json


def test_rows_of_several_files_keep_their_source(tmp_path):
    _land(tmp_path, [_event(1), _event(2, price=-1)], name="events-00000.jsonl")
    _land(tmp_path, [_event(3, price=-1)], name="events-00001.jsonl")
    result = _validate(tmp_path)
    assert result.rows_in == 3
    assert [(r[SOURCE_FILE], r[SOURCE_LINE]) for r in _quarantine(tmp_path)] == [
        (f"dt={DS}/events-00000.jsonl", 2), (f"dt={DS}/events-00001.jsonl", 1)]


def test_naive_interval_is_refused(tmp_path):
    _land(tmp_path, [_event(1)])
    with pytest.raises(ValueError, match="interval_start=.*naive"):
        validate_raw_events(partition_path(tmp_path / "raw", DS), DS, START.replace(tzinfo=None), END,
                            tmp_path / "v", tmp_path / "q", tmp_path / "gx", 0.1)


def _land_bytes(root: Path, lines: list[bytes], prefix: bytes = b"") -> Path:
    partition = partition_path(root / "raw", DS)
    partition.mkdir(parents=True, exist_ok=True)
    (partition / "events-00000.jsonl").write_bytes(prefix + b"\n".join(lines) + b"\n")
    return partition


def test_the_contract_refuses_each_hostile_line_with_its_reason_and_loses_no_good_row(tmp_path):
    from tests.validation.hostile import CORPUS

    _land_bytes(tmp_path, [raw for _, raw, _ in CORPUS])
    result = _validate(tmp_path)
    by_line = {row[SOURCE_LINE]: row[QUARANTINE_REASON] for row in _quarantine(tmp_path)}
    for number, (name, _, reason) in enumerate(CORPUS, start=1):
        got = by_line.get(number)
        assert (reason is None and got is None) or (reason is not None and reason in (got or "").split(";")), \
            f"line {number} ({name}): expected {reason}, got {got}"
    accepted = _validated(tmp_path).to_pylist()
    assert len(accepted) == sum(reason is None for _, _, reason in CORPUS) == result.rows_accepted
    assert {row["user_id"] for row in accepted} >= {"1234567890123", "ünïcode-Ω"}  # integers as decimal text
    assert all(0 <= row[PRICE] <= 1_000_000 for row in accepted if row[PRICE] is not None)
    assert result.rows_in == len(CORPUS) == result.rows_accepted + result.rows_quarantined


def test_a_byte_order_mark_is_stripped_and_blank_lines_are_counted(tmp_path):
    partition = _land_bytes(tmp_path, [json.dumps(_event(1)).encode(), b"", b"   ", json.dumps(_event(2)).encode(),
                                       b"\r"], prefix=b"\xef\xbb\xbf")
    result = _validate(tmp_path, max_failure_rate=0.0)
    assert (result.rows_accepted, result.rows_quarantined, result.blank_lines) == (2, 0, 3)
    lines = (partition / "events-00000.jsonl").read_bytes().count(b"\n")
    assert lines == result.rows_in + result.blank_lines


def test_sizes_come_from_the_config(tmp_path):
    from pipelines.validation.raw_events_suite import RawLimits

    _land(tmp_path, [_event(1, user_id="u" * 20), _event(2, price=50.0)])
    result = validate_raw_events(
        raw_partition=partition_path(tmp_path / "raw", DS), ds=DS, interval_start=START, interval_end=END,
        validated_partition=partition_path(tmp_path / "validated", DS),
        quarantine_partition=partition_path(tmp_path / "quarantine", DS), gx_project_dir=tmp_path / "gx",
        max_failure_rate=1.0, limits=RawLimits(max_id_length=10, max_price=20.0))
    assert result.reasons == {"user_id_too_long": 1, "price_above_max": 1}
