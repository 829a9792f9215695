"""The local runner's one rule for the window's earlier days: validate what no earlier night validated."""

from __future__ import annotations

import io
import json

import pytest

from pipelines import lake
from pipelines.config import load_config
from pipelines.lake import partition_path
from pipelines.local.runner import earlier_days, land_demo, validate_earlier_days
from pipelines.validation.raw_day import already_validated

DS = "2026-11-27"


@pytest.fixture
def config(tmp_path):
    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    return load_config({"paths": paths, "demo": {"days": 3, "n_users": 30, "n_items": 40, "events_per_day": 60},
                        "features": {"window_days": 3}})


def test_earlier_days_are_the_landed_days_of_the_window_before_ds(config):
    for day in ("2026-11-20", "2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"):
        partition_path(config.layout.raw_events, day).mkdir(parents=True)
    assert earlier_days(config, DS) == ["2026-11-25", "2026-11-26"]


def test_days_are_validated_once_and_a_refused_day_is_reported_not_fatal(config):
    land_demo(config, DS)
    broken = partition_path(config.layout.raw_events, "2026-11-26") / "events-00000.jsonl"
    broken.write_text("not json\n" * 10)  # a day the collector broke: every line quarantined
    out = io.StringIO()
    first = validate_earlier_days(config, DS, out)
    assert first["2026-11-25"].endswith("quarantined") and first["2026-11-26"].startswith("refused: ")
    assert "malformed_json" in first["2026-11-26"]
    assert out.getvalue().count("earlier days") == 2 and "  1/2: 2026-11-25" in out.getvalue()
    record = lake.read_record(config.layout.check_record("2026-11-26", lake.RAW_EVENTS_CHECK))
    assert record["success"] is False and record["rows_in"] == 10
    assert already_validated(config, "2026-11-25") and already_validated(config, "2026-11-26")
    again = validate_earlier_days(config, DS, io.StringIO())
    assert set(again.values()) == {"validated before"}


def test_a_record_without_counts_is_validated_again(config):
    record = config.layout.check_record("2026-11-26", lake.RAW_EVENTS_CHECK)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"ds": "2026-11-26", "success": False, "failures": ["partition missing"]}))
    assert not already_validated(config, "2026-11-26")
