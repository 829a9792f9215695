"""pipelines.filesystem: a local path and a file:// URI are one code path, for the helpers and for the stages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.features.store import load_feature_partition
from pipelines.lake import partition_path
from pipelines.scoring.catalog import read_catalog
from pipelines.suppression import append_suppressed, read_suppressed
from pipelines.validation import validate_raw_events


def _both(folder: Path) -> list:
    """The same folder as a Path and as a file:// URI."""
    return [folder, folder.as_uri()]


@pytest.mark.parametrize("as_uri", [False, True])
def test_text_json_and_listing_work_the_same_on_a_path_and_a_file_uri(tmp_path, as_uri):
    root = tmp_path.as_uri() if as_uri else tmp_path
    fs.write_text(fs.join(root, "day", "a.jsonl"), '{"x": 1}\n\n{"x": 2}\n')
    fs.write_text(fs.join(root, "day", "b.json"), json.dumps({"ok": True}))
    fs.write_text(fs.join(root, "day", ".staging-a.jsonl"), "hidden")
    fs.write_text(fs.join(root, "day", "sub", "x.json"), "{}")

    assert isinstance(fs.join(root, "day"), Path) is (not as_uri)
    assert fs.read_json_lines(fs.join(root, "day", "a.jsonl")) == [{"x": 1}, {"x": 2}]
    assert fs.read_json(fs.join(root, "day", "b.json")) == {"ok": True}
    assert [fs.name_of(p) for p in fs.list_dir(fs.join(root, "day"))] == ["a.jsonl", "b.json"]
    assert [fs.name_of(p) for p in fs.list_dir(fs.join(root, "day"), suffix=".jsonl", hidden=True)] == [
        ".staging-a.jsonl", "a.jsonl"]
    assert [fs.name_of(p) for p in fs.list_dir(fs.join(root, "day"), kind="dir")] == ["sub"]
    assert fs.list_dir(fs.join(root, "absent")) == []
    assert fs.is_dir(fs.join(root, "day")) and fs.is_file(fs.join(root, "day", "b.json"))
    assert not fs.exists(fs.join(root, "day", "c.json"))
    assert fs.name_of(fs.parent(fs.join(root, "day", "b.json"))) == "day"
    fs.move(fs.join(root, "day", "b.json"), fs.join(root, "day", "c.json"))
    assert not fs.exists(fs.join(root, "day", "b.json")) and fs.read_json(fs.join(root, "day", "c.json"))
    fs.remove(fs.join(root, "day"))
    fs.remove(fs.join(root, "day"))  # absent: nothing to do
    assert not fs.exists(fs.join(root, "day"))


@pytest.mark.parametrize("as_uri", [False, True])
def test_parquet_is_written_and_read_the_same_on_a_path_and_a_file_uri(tmp_path, as_uri):
    root = tmp_path.as_uri() if as_uri else tmp_path
    table = pa.table({"user_key": ["a", "b", None], "n": [1, 2, 3]})
    fs.write_parquet(table, fs.join(root, "t", "part-0.parquet"))
    with fs.parquet_writer(fs.join(root, "t", "part-1.parquet"), table.schema) as writer:
        writer.write_table(table.slice(0, 1))
        writer.write_table(table.slice(1))
    assert fs.read_parquet(fs.join(root, "t", "part-0.parquet")).equals(table)
    assert fs.read_parquet(fs.join(root, "t"), columns=["n"]).column("n").to_pylist() == [1, 2, 3, 1, 2, 3]
    assert fs.parquet_file(fs.join(root, "t", "part-1.parquet")).metadata.num_row_groups == 2
    assert fs.parquet_dataset(fs.join(root, "t")).count_rows() == 6


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=60).map(lambda b: b.replace(b"x", b"\n")), block=st.integers(1, 7))
def test_iter_lines_gives_the_lines_a_binary_file_gives(tmp_path_factory, data, block):
    path = tmp_path_factory.mktemp("lines") / "f.jsonl"
    path.write_bytes(data)
    original = fs.LINE_BLOCK
    fs.LINE_BLOCK = block
    try:
        got = list(fs.iter_lines(path.as_uri()))
    finally:
        fs.LINE_BLOCK = original
    with path.open("rb") as handle:
        assert got == [line.removesuffix(b"\n") for line in handle]


def test_an_unknown_scheme_and_an_append_to_an_object_store_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"nosuch://bucket/x: no filesystem for this URI .*file://, s3://"):
        fs.read_bytes("nosuch://bucket/x")
    with pytest.raises(ValueError, match=r"appending needs a POSIX filesystem.*local or mounted path"):
        fs.append_text("mock:///privacy/audit.jsonl", "{}\n")


def _event(number: int, **fields) -> dict:
    return {"event_id": f"e{number}", "event_time": "2026-11-27T10:00:00Z", "user_id": f"u{number % 3}",
            "session_id": "s1", "event_type": "product_view", "item_id": f"i{number % 5}", "category": "books",
            "price": 9.5, "device": "mobile", **fields}


def test_raw_validation_reads_a_day_from_a_file_uri_as_from_a_path(tmp_path):
    raw = partition_path(tmp_path / "raw", "2026-11-27")
    raw.mkdir(parents=True)
    lines = [json.dumps(_event(n)) for n in range(30)] + ["{not json", json.dumps(_event(3)), "",
                                                          json.dumps(_event(31, price=-2))]
    (raw / "events-00000.jsonl").write_text("\n".join(lines) + "\n")
    start = datetime(2026, 11, 27, tzinfo=UTC)
    results = []
    for name, location in zip(("path", "uri"), _both(raw), strict=True):
        out = tmp_path / name
        result = validate_raw_events(location, "2026-11-27", start, start + timedelta(days=1),
                                     partition_path(out / "validated", "2026-11-27"),
                                     partition_path(out / "quarantine", "2026-11-27"), out / "gx", 1.0)
        quarantine = fs.read_parquet(partition_path(out / "quarantine", "2026-11-27")).select(
            [C.SOURCE_FILE, C.SOURCE_LINE, C.QUARANTINE_REASON]).to_pylist()
        results.append(({**result.to_dict(), "data_docs_path": None}, quarantine))
    assert results[0] == results[1]
    counts, quarantine = results[0]
    assert (counts["rows_accepted"], counts["rows_quarantined"], counts["blank_lines"]) == (30, 3, 1)
    assert {row[C.SOURCE_FILE] for row in quarantine} == {"dt=2026-11-27/events-00000.jsonl"}


def test_lake_records_days_features_catalog_and_suppressions_through_a_file_uri(tmp_path):
    features = tmp_path / "features"
    day = partition_path(features, "2026-11-27")
    fs.write_parquet(pa.table({C.USER_KEY: ["k1", "k2"], C.ITEM_SEQ: [[1, 2], [2]]}),
                     day / lake.SEQUENCES / "part-00000.parquet")
    fs.write_parquet(pa.table({C.ITEM_ID: ["i1", "i2"], C.ITEM_IDX: [1, 2]}), day / lake.ITEM_VOCAB / "part-0.parquet")
    fs.write_text(day / lake.FEATURE_STATS, json.dumps({"users_with_sequences": 2, "items": 2}))
    (features / "dt=not-a-day").mkdir()

    on_path, on_uri = (load_feature_partition(root, "2026-11-27") for root in _both(features))
    assert (on_uri.num_sequences, on_uri.num_items, on_uri.stats) == (on_path.num_sequences, 2, on_path.stats)
    assert on_uri.sequences.equals(on_path.sequences) and on_uri.digest == on_path.digest
    assert list(lake.day_folders(features.as_uri())) == ["2026-11-27"]
    assert lake.read_record(fs.join(features.as_uri(), "dt=2026-11-27", lake.FEATURE_STATS))["items"] == 2

    catalog = tmp_path / "catalog"
    fs.write_text(catalog / "stock.jsonl", '{"item_id": "i1", "stock": 3}\n\n{"item_id": "i2", "stock": 0}\n')
    fs.write_text(catalog / "_ignored.jsonl", "not read")
    assert read_catalog(catalog.as_uri()).equals(read_catalog(catalog))

    listed = tmp_path.as_uri() + "/privacy/suppressed.jsonl"
    assert append_suppressed(listed, [{"digest": "d1"}, {"digest": "d2"}, {"digest": "d1"}]) == 2
    assert append_suppressed(listed, [{"digest": "d2"}]) == 0
    assert read_suppressed(listed) == read_suppressed(tmp_path / "privacy" / "suppressed.jsonl") == {"d1", "d2"}
