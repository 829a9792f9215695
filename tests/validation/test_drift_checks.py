"""Drift checks against the trailing days: bands from history, severities from config, real GX.

History is written as earlier nights would have left it (a validated partition and a check record
with the day's profile); today's raw day goes through the task function the DAG calls.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.config import load_config
from pipelines.dates import trailing_days
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path
from pipelines.validation.checks import DataCheckError
from pipelines.validation.drift import day_profile, drift_frame, robust_band

DS = "2026-11-27"
TYPES = ["product_view"] * 6 + ["add_to_cart"] * 2 + ["purchase", "search"]


def _events(n: int, day: str, users: int = 20) -> list[dict]:
    return [{"event_id": f"{day}-{i}", "event_time": f"{day}T10:{i % 60:02d}:00Z", "user_id": f"u{i % users}",
             "session_id": f"s{i % users}", "event_type": TYPES[i % len(TYPES)],
             "item_id": None if TYPES[i % len(TYPES)] == "search" else f"i{i % 15}", "category": "c",
             "price": 10.0 + i % 5, "device": "mobile"} for i in range(n)]


def _config(tmp_path, **severity):
    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    return load_config({"paths": paths, "checks": {"min_history_days": 4, "severity": severity}})


def _write_history(config, days: list[str], rows: int = 200) -> None:
    """Earlier nights: validated events and a passed check record holding the day's profile."""
    for day in days:
        frame = pd.DataFrame(_events(rows, day)).reindex(columns=list(C.RAW_COLUMNS))
        folder = partition_path(config.layout.validated_events, day)
        folder.mkdir(parents=True)
        frame.to_parquet(folder / lake.PART_FILE)
        profile = day_profile(drift_frame(frame, {f"i{i}" for i in range(15)}, {f"u{i}" for i in range(20)}))
        write_json_atomic(config.layout.check_record(day, lake.RAW_EVENTS_CHECK),
                          {"ds": day, "success": True, "rows_in": rows, "rows_accepted": rows,
                           "rows_quarantined": 0, "drift": {"profile": profile}})


def _land(config, rows: int) -> None:
    folder = partition_path(config.layout.raw_events, DS)
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _events(rows, DS)))


def test_robust_band_uses_median_mad_and_floors():
    assert robust_band([100, 110, 90, 100, 105], mads=4, relative_floor=0.5) == {
        "median": 100, "min": 50.0, "max": 150.0, "days": 5}
    wide = robust_band([0.1, 0.3, 0.7, 0.2, 0.5], mads=4, absolute_floor=0.05, cap=1.0)
    assert wide["min"] == 0.0 and wide["max"] == 1.0
    assert robust_band([], mads=4) is None


def test_a_tenth_of_the_usual_volume_fails_when_volume_is_a_fail_check(tmp_path):
    from pipelines.tasks import validate_raw_events

    config = _config(tmp_path, volume="fail")
    _write_history(config, trailing_days(DS, 5))
    _land(config, rows=20)
    with pytest.raises(DataCheckError, match=r"volume \[fail\].*observed 20 \(expected >= 100"):
        validate_raw_events(DS, {"paths": {k: str(tmp_path / k) for k in ("var_dir", "lake_dir", "gx_dir",
                                                                          "mlflow_dir", "reports_dir")},
                                 "checks": {"min_history_days": 4, "severity": {"volume": "fail"}}})
    record = json.loads((config.layout.check_record(DS, lake.RAW_EVENTS_CHECK)).read_text())
    assert record["success"] is False and record["failures"][0].startswith("volume [fail]")
    assert any(page.endswith(".html") for page in record["drift"]["data_docs"].values())


def test_a_tenth_of_the_usual_volume_is_a_warning_when_configured_so(tmp_path):
    from pipelines.validation.drift import check_raw_drift

    config = _config(tmp_path, volume="warn")
    _write_history(config, trailing_days(DS, 5))
    _write_history(config, [DS], rows=20)
    result = check_raw_drift(config, DS)
    assert result["success"] and result["failures"] == []
    assert [w for w in result["warnings"] if w.startswith("volume [warn]")]
    assert result["bands"]["volume"]["median"] == 200


def test_too_little_history_warns_instead_of_passing_silently(tmp_path):
    from pipelines.validation.drift import check_raw_drift

    config = _config(tmp_path)
    _write_history(config, trailing_days(DS, 2))
    _write_history(config, [DS], rows=20)
    result = check_raw_drift(config, DS)
    assert result["success"] and result["checks"] == []
    assert "only 2 trailing day(s)" in result["warnings"][0]


def test_new_users_and_unknown_items_are_shares_of_the_day(tmp_path):
    events = pd.DataFrame(_events(10, DS, users=10))
    profile = day_profile(drift_frame(events, known_items={"i0", "i1"}, known_users={"u0"}))
    assert profile["rows"] == 10 and profile["new_user_share"] == 0.9
    assert profile["unknown_item_share"] == pytest.approx(7 / 9, abs=1e-6)  # item events only
    assert profile["event_type_shares"]["product_view"] == 0.6


def test_non_finite_prices_are_left_out_of_the_profile_and_counted():
    events = pd.DataFrame(_events(4, DS)).reindex(columns=list(C.RAW_COLUMNS))
    events[C.PRICE] = [10.0, float("inf"), float("-inf"), 20.0]
    profile = day_profile(drift_frame(events, set(), set()))
    assert profile["price_mean"] == 15.0 and profile["non_finite_prices"] == 2
