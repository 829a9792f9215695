"""The lake's layout: day folders, record paths and reading records; and the day arithmetic it uses."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from pipelines import lake
from pipelines.config import load_config
from pipelines.dates import DateError, day_interval, parse_ds, trailing_days, window_bounds


def test_window_lists_only_the_needed_partitions(tmp_path):
    for name in ("dt=2026-11-24", "dt=2026-11-25", "dt=2026-11-27", "dt=2026-11-28",
                 ".staging-dt=2026-11-26-abc", "dt=garbage", "notes"):
        (tmp_path / name).mkdir()
    got = lake.window_partitions(tmp_path, "2026-11-27", window_days=3)
    assert [p.name for p in got] == ["dt=2026-11-25", "dt=2026-11-27"]
    (tmp_path / "dt=2026-11-25" / lake.ITEM_VOCAB).mkdir()
    (tmp_path / "dt=2026-11-27" / lake.ITEM_VOCAB).mkdir()  # the run's own date is never "previous"
    assert lake.latest_partition_before(tmp_path, "2026-11-27", "item_vocab").name == "dt=2026-11-25"
    assert lake.latest_partition_before(tmp_path, "2026-11-25", "item_vocab") is None


def test_layout_spells_each_record_path_once(tmp_path):
    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    layout = load_config({"paths": paths}).layout
    assert layout.check_record("2026-11-27", lake.RAW_EVENTS_CHECK) == \
        tmp_path / "lake_dir" / "checks" / "dt=2026-11-27" / "raw_events.json"
    assert layout.decision_record("2026-11-27").parent == lake.partition_path(layout.evaluations, "2026-11-27")
    assert layout.candidate_record("2026-11-27", "sasrec").name == "sasrec.json"
    assert layout.feature_stats("2026-11-27") == layout.features / "dt=2026-11-27" / lake.FEATURE_STATS
    assert layout.run_report("2026-11-27", "md") == tmp_path / "reports_dir" / "run-2026-11-27.md"
    assert lake.day_of(lake.partition_path(layout.raw_events, "2026-11-27")) == "2026-11-27"


def test_relative_paths_resolve_against_the_repository_root():
    layout = load_config({"paths": {"lake_dir": "var/elsewhere"}}).layout
    assert layout.lake_dir.is_absolute() and layout.lake_dir.parts[-2:] == ("var", "elsewhere")


def test_read_record_missing_stale_and_unreadable(tmp_path):
    record = tmp_path / "raw_events.json"
    assert lake.read_record(record) == {}
    record.write_text('{"success": true}')
    assert lake.read_record(record) == {"success": True}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert lake.read_record(record, since=later) == {}  # written before this run began: not this run's
    old = record.stat().st_mtime - 3600
    os.utime(record, (old, old))
    assert not lake.is_fresh(record, dt.datetime.now(dt.UTC))
    record.write_text("{not json")
    assert lake.read_record(record)["success"] is False  # never mistaken for a pass


def test_day_arithmetic():
    assert day_interval("2026-11-27") == (dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
                                          dt.datetime(2026, 11, 28, tzinfo=dt.UTC))
    assert trailing_days("2026-03-02", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert window_bounds("2026-11-27", 1) == ("2026-11-27", "2026-11-27")
    assert parse_ds("2026-01-05") == "2026-01-05" and len(parse_ds(None)) == 10
    with pytest.raises(DateError, match="not a date; use YYYY-MM-DD"):
        parse_ds("27/11/2026")
    with pytest.raises(ValueError, match="must be >= 1"):
        window_bounds("2026-11-27", 0)
