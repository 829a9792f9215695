"""Bring your own clickstream: the shipped mappings on the real samples, bad mappings and bad rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipelines import columns as C
from pipelines.config import REPO_ROOT
from pipelines.importers import ImportFailed, MappingError, import_file, load_mapping

DATASETS = REPO_ROOT.parent / "shared" / "datasets"
MAPPINGS = REPO_ROOT / "conf" / "mappings"
SAMPLES = {
    "rees46": DATASETS / "rees46-sample" / "events.csv",
    "diginetica": DATASETS / "diginetica-sample" / "train-item-views.csv",
    "amazon-games": DATASETS / "amazon-games" / "sequences.txt",
}
needs_samples = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} is not there")


def _import(tmp_path: Path, mapping: Path | str, source: Path):
    mapping = MAPPINGS / f"{mapping}.yaml" if isinstance(mapping, str) else mapping
    return import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")


def _landed(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((tmp_path / "raw").glob("dt=*/*.jsonl"))
            for line in path.read_text().splitlines()]


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    return path


SHOP = """
source: shop
separator: ","
timezone: Europe/Berlin
event_time: {column: ts, format: "%Y-%m-%d %H:%M:%S"}
event_type: {column: kind, values: {view: product_view, buy: purchase}}
user_id: customer
item_id: sku
category: cat
price: amount
"""
HEADER = "ts,kind,customer,sku,cat,amount\n"


@needs_samples
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_shipped_mappings_import_their_samples(tmp_path, name):
    result = _import(tmp_path, name, SAMPLES[name])
    expected_rows = {"rees46": 1000, "diginetica": 12391, "amazon-games": 287107}[name]
    assert result.rows_in == result.landed == expected_rows and result.quarantined == 0
    assert sum(result.days.values()) == result.landed
    rows = _landed(tmp_path)
    assert len(rows) == expected_rows and len({r[C.EVENT_ID] for r in rows}) == expected_rows
    assert all(set(r) == set(C.RAW_COLUMNS) for r in rows[:50])
    assert json.loads(Path(result.report_path).read_text())["landed"] == expected_rows


@needs_samples
def test_sample_rows_are_mapped_as_documented(tmp_path):
    _import(tmp_path / "r", "rees46", SAMPLES["rees46"])
    first = _landed(tmp_path / "r")[0]
    assert (first[C.EVENT_TIME], first[C.EVENT_TYPE], first[C.ITEM_ID], first[C.PRICE]) == (
        "2019-10-01T00:00:00.000000Z", C.PRODUCT_VIEW, "44600062", 35.79)
    assert first[C.CATEGORY] == "id:2103807459595387724"  # no category_code: the id stands in
    _import(tmp_path / "d", "diginetica", SAMPLES["diginetica"])
    views = [r for r in _landed(tmp_path / "d") if r[C.SESSION_ID] == "1"]
    assert views[0][C.USER_ID] == "session-1"  # anonymous (NA): the session is the user
    assert views[0][C.EVENT_TIME] == "2016-05-09T00:08:46.309000Z"  # eventdate + 526309 ms


def test_sequence_file_gets_a_deterministic_time_from_the_order(tmp_path):
    source = tmp_path / "seq.txt"
    source.write_text("1 10\n1 11\n2 10\n1 12\n")
    _import(tmp_path, "amazon-games", source)
    got = [(r[C.USER_ID], r[C.ITEM_ID], r[C.EVENT_TIME]) for r in _landed(tmp_path)]
    assert got == [("u1", "i10", "2018-01-01T00:00:00.000000Z"), ("u1", "i11", "2018-01-01T00:01:00.000000Z"),
                   ("u2", "i10", "2018-01-01T00:00:00.000000Z"), ("u1", "i12", "2018-01-01T00:02:00.000000Z")]


def test_reimport_replaces_its_own_files_and_never_duplicates(tmp_path):
    mapping = _mapping(tmp_path, SHOP)
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "2026-11-26 10:00:00,view,c1,s1,books,9.5\n2026-11-27 10:00:00,buy,c1,s1,books,9.5\n")
    first = import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")
    rows = _landed(tmp_path)
    again = import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")
    assert _landed(tmp_path) == rows and again.files == first.files
    source.write_text(HEADER + "2026-11-27 10:00:00,buy,c1,s1,books,9.5\n")  # the export lost a day
    third = import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")
    assert [Path(f).parent.name for f in third.removed_stale_files] == ["dt=2026-11-26"]
    assert len(_landed(tmp_path)) == 1


def test_local_times_are_converted_and_bad_rows_quarantined_with_reasons(tmp_path):
    mapping = _mapping(tmp_path, SHOP)
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "\n".join([
        "2026-11-27 00:30:00,view,c1,s1,books,9.5",  # Berlin +01:00: the day before in UTC
        "2026-11-27 10:00:00,view,c1,s2,,-3",  # no category, negative price: lands; validation decides
        "yesterday,view,c1,s1,books,1",  # time does not parse
        "2026-03-29 02:30:00,view,c1,s1,books,1",  # does not exist in Berlin (clocks jump)
        "2026-11-27 10:00:00,wishlist,c1,s1,books,1",  # event type not in the mapping
        "2026-11-27 10:00:00,buy,c1,s1,books,99999999",  # absurd price
        "2026-11-27 10:00:00,view,c1",  # too few fields
    ]) + "\n")
    mapping_doc = load_mapping(mapping).model_copy(update={"max_reject_rate": 1.0})
    result = import_file(mapping_doc, mapping, source, tmp_path / "raw", tmp_path / "imports")
    assert (result.rows_in, result.landed, result.quarantined) == (7, 2, 5)
    assert result.days == {"2026-11-26": 1, "2026-11-27": 1}
    landed = _landed(tmp_path)
    assert landed[0][C.EVENT_TIME] == "2026-11-26T23:30:00.000000Z"
    assert (landed[1][C.CATEGORY], landed[1][C.PRICE]) == (None, -3.0)
    refused = [json.loads(line) for line in Path(result.quarantine_path).read_text().splitlines()]
    assert [(r[C.SOURCE_LINE], r[C.QUARANTINE_REASON], r["column"]) for r in refused] == [
        (4, "unparseable_time", "ts"), (5, "nonexistent_or_ambiguous_local_time", "ts"),
        (6, "unmapped_event_type", "kind"), (7, "absurd_price", "price"), (8, "malformed_row", None)]
    assert refused[0][C.RAW_LINE] == "yesterday,view,c1,s1,books,1"


def test_a_time_format_that_does_not_fit_fails_naming_file_line_and_column(tmp_path):
    mapping = _mapping(tmp_path, SHOP.replace("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M"))
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "2026-11-27 10:00:00,view,c1,s1,books,9.5\n")
    with pytest.raises(ImportFailed, match=r"export.csv: 1 of 1 rows .*nothing was landed. First: line 2, "
                                           r"column 'ts', value '2026-11-27 10:00:00': unparseable_time"):
        import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")
    assert not list((tmp_path / "raw").glob("dt=*/*"))


def test_a_mapping_naming_a_missing_column_fails_naming_file_line_and_column(tmp_path):
    mapping = _mapping(tmp_path, SHOP.replace("item_id: sku", "item_id: product"))
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "2026-11-27 10:00:00,view,c1,s1,books,9.5\n")
    with pytest.raises(ImportFailed, match=r"export.csv: line 1 \(the header\) has no column 'product', "
                                           r"which .*shop.yaml names in 'item_id'"):
        import_file(load_mapping(mapping), mapping, source, tmp_path / "raw", tmp_path / "imports")


@pytest.mark.parametrize("change, message", [
    (("timezone: Europe/Berlin\n", ""), r"key 'timezone' is required: the IANA zone"),
    (("timezone: Europe/Berlin", "timezone: Mars/Olympus"), r"not an IANA time zone"),
    (("buy: purchase", "buy: order"), r"event types \['order'\] are not ours; allowed: \['product_view'"),
    (("user_id: customer", "user: customer"), r"unknown key 'user'; allowed: source, format"),
])
def test_bad_mappings_name_the_file_and_the_key(tmp_path, change, message):
    path = _mapping(tmp_path, SHOP.replace(*change))
    with pytest.raises(MappingError, match=rf"(?s)shop.yaml: invalid mapping:\n.*{message}"):
        load_mapping(path)


def test_json_lines_exports_and_a_day_with_ten_times_the_volume(tmp_path):
    mapping = _mapping(tmp_path, "source: app\nformat: jsonl\ntimezone: UTC\nevent_time: {column: t, format: epoch_millis}\n"
                                 "event_type: {value: product_view}\nuser_id: u\nitem_id: i\n")
    start = int(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp() * 1000)
    days = [0, 1, 2, 3] * 2 + [4] * 80
    lines = [json.dumps({"t": start + d * 86_400_000, "u": f"u{n}", "i": n}) for n, d in enumerate(days)]
    (tmp_path / "app.jsonl").write_text("\n".join(lines + ["{not json"]) + "\n")
    mapping_doc = load_mapping(mapping)
    result = import_file(mapping_doc, mapping, tmp_path / "app.jsonl", tmp_path / "raw", tmp_path / "imports")
    assert (result.rows_in, result.landed, result.reasons) == (89, 88, {"malformed_row": 1})
    assert result.volume_alerts == {"2026-11-24": 40.0}
    assert _landed(tmp_path)[0][C.ITEM_ID] == "0"  # numbers become text ids


@needs_samples
@pytest.mark.spark
def test_imported_samples_pass_validation_and_the_feature_job(spark, tmp_path, monkeypatch):
    """REES46 and DIGINETICA days through the nightly validation and the Spark feature job."""
    from pipelines.dates import day_interval
    from pipelines.lake import partition_path
    from pipelines.validation import validate_raw_events
    from tests.features.frames import job_args, load_job

    lake = tmp_path / "lake"
    for name in ("rees46", "diginetica"):
        _import(lake, name, SAMPLES[name])
    job = load_job()
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    for ds, days in (("2019-10-01", ["2019-10-01"]), ("2016-06-01", ["2016-05-30", "2016-05-31", "2016-06-01"])):
        for day in days:
            start, end = day_interval(day)
            result = validate_raw_events(
                partition_path(lake / "raw", day), day, start - dt.timedelta(days=1), end,
                partition_path(lake / "validated", day), partition_path(lake / "quarantine", day), lake / "gx", 0.05)
            assert result.rows_in == result.rows_accepted + result.rows_quarantined and result.success
        stats = job.main(["--ds", ds, "--features-root", str(lake / "features"),
                          *job_args(lake / "validated", window_days=3, min_seq_len=2, shuffle_partitions=1,
                                    hash_key_env="TEST_HASH_KEY")])
        assert stats["users_with_sequences"] > 0 and stats["items"] > 0, stats
        assert stats["events_in"] == stats["duplicates_dropped"] + stats["events_after_dedup"]
