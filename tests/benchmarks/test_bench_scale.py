"""``make bench-scale``'s pieces that decide what it prints: the landing, the memory guard, growth, the table."""

from __future__ import annotations

import json

from benchmarks.scale import run
from pipelines import lake
from pipelines.config import load_config


def test_the_window_lands_as_collector_json_lines_with_the_same_people_each_day(tmp_path):
    env = run.scale_env(tmp_path, days=2, epochs=1)
    config = load_config(env=env)
    days = run.land_window(config, events=400, days=2)
    assert days == ["2026-11-26", "2026-11-27"]
    users = []
    for day in days:
        [file] = list(lake.partition_path(config.layout.raw_events, day).glob("*.jsonl"))
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        assert len(rows) == 400 and all(row["event_time"].startswith(day) for row in rows if "event_time" in row)
        users.append({row["user_id"] for row in rows if isinstance(row.get("user_id"), str)})
    assert users[0] & users[1]  # returning people, so the window's sequences span both days
    assert str(tmp_path) in env["PIPELINE__PATHS__LAKE_DIR"] and str(tmp_path) in env["AIRFLOW_HOME"]


def test_the_guard_grows_memory_as_it_grew_and_skips_what_would_not_fit(monkeypatch):
    class Memory:
        available = 20 * 2**30

    monkeypatch.setattr(run.psutil, "virtual_memory", lambda: Memory)
    bounded = [{"events": 100_000, "peak_gib": 1.0}, {"events": 1_000_000, "peak_gib": 1.1}]
    linear = [{"events": 100_000, "peak_gib": 0.4}, {"events": 1_000_000, "peak_gib": 4.0}]
    assert run._would_not_fit("validate_raw_events", 10_000_000, bounded) is None
    reason = run._would_not_fit("train_candidate", 10_000_000, linear)
    assert reason and "40.0 GiB" in reason and "20.0 GiB available" in reason
    assert run._would_not_fit("train_candidate", 4_000_000, linear) is None  # 16 GiB fits
    assert run._would_not_fit("score_users", 10_000_000, linear[1:]) is None  # one size: no growth known, it runs


def test_growth_and_table_show_each_stage_per_size_and_skips():
    entries = [{"events": 1000, "stage": stage, "seconds": 2.0, "peak_gib": 0.5} for stage in run.NIGHT]
    entries += [{"events": 10_000, "stage": stage, "seconds": 4.0, "peak_gib": 0.5} for stage in run.NIGHT[:2]]
    entries += [{"events": 10_000, "stage": stage, "seconds": None, "peak_gib": None, "skipped": "too big"}
                for stage in run.NIGHT[2:]]
    report = {"cores": 2, "days": 2, "sizes": [1000, 10_000], "entries": entries,
              "growth": run.growth(entries, [1000, 10_000])}
    assert report["growth"]["build_features"] == {"events_ratio": 10.0, "seconds_ratio": 2.0, "peak_ratio": 1.0}
    assert "score_users" not in report["growth"]
    table = run.format_table(report)
    assert "build_features" in table and "skipped" in table and "too big" in table


def test_a_night_cut_short_by_until_shows_only_its_stages():
    night = run.NIGHT[:run.NIGHT.index("build_features") + 1]
    entries = [{"events": n, "stage": stage, "seconds": 1.0 + n / 1000, "peak_gib": 0.5}
               for n in (1000, 10_000) for stage in night]
    report = {"cores": 2, "days": 2, "sizes": [1000, 10_000], "entries": entries,
              "growth": run.growth(entries, [1000, 10_000])}
    rows = run.format_table(report).splitlines()[2:]
    assert [row.split()[0] for row in rows[:2]] == ["validate_raw_events", "build_features"]
    assert not any(row.startswith("score_users") for row in rows)
    assert set(report["growth"]) == set(night)
