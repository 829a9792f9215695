"""The demo clickstream: deterministic, complete, inside its days, and with learnable structure."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from pipelines.columns import (
    ADD_TO_CART,
    EVENT_TYPES,
    ITEM_EVENT_TYPES,
    PRODUCT_VIEW,
    PURCHASE,
    RAW_COLUMNS,
    SEARCH,
)
from pipelines.demo.clickstream import EVENTS_FILE_NAME, generate_demo_clickstream

END = date(2026, 11, 28)  # a Saturday
SMALL = {"n_users": 300, "n_items": 120, "events_per_day": 3_000, "seed": 7}


def _generate(root: Path, days: int = 7, end: date = END, **overrides) -> dict:
    return generate_demo_clickstream(root, end_date=end, days=days, **{**SMALL, **overrides})


def _read_day(root: Path, ds: str) -> list[dict]:
    path = root / f"dt={ds}" / EVENTS_FILE_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("raw_events")
    return root, _generate(root)


@pytest.fixture(scope="module")
def events(week) -> list[dict]:
    root, summary = week
    return [event for ds in summary["days"] for event in _read_day(root, ds)]


def test_writes_one_partition_a_day_and_summarises_it(week):
    root, summary = week
    assert summary["days"] == [f"2026-11-{day}" for day in range(22, 29)]
    assert sorted(p.name for p in root.iterdir()) == [f"dt={ds}" for ds in summary["days"]]
    for ds in summary["days"]:
        assert len(_read_day(root, ds)) == summary["events_per_day"][ds]
    assert summary["total_events"] == sum(summary["events_per_day"].values())
    assert not list(root.glob(".staging-*"))


def test_reruns_and_one_day_backfills_are_byte_identical(tmp_path, week):
    root, summary = week
    _generate(tmp_path / "again")
    _generate(tmp_path / "backfill", days=1, end=date(2026, 11, 25))
    for ds in summary["days"]:
        first = (root / f"dt={ds}" / EVENTS_FILE_NAME).read_bytes()
        assert (tmp_path / "again" / f"dt={ds}" / EVENTS_FILE_NAME).read_bytes() == first
    backfilled = (tmp_path / "backfill" / "dt=2026-11-25" / EVENTS_FILE_NAME).read_bytes()
    assert backfilled == (root / "dt=2026-11-25" / EVENTS_FILE_NAME).read_bytes()


def test_another_seed_gives_other_events(tmp_path, week):
    root, _ = week
    _generate(tmp_path, days=1, seed=8)
    assert _read_day(tmp_path, "2026-11-28") != _read_day(root, "2026-11-28")


def test_every_event_has_the_raw_fields_and_unique_id(events):
    assert all(list(event) == list(RAW_COLUMNS) for event in events)
    assert {event["event_type"] for event in events} == set(EVENT_TYPES)
    assert len({event["event_id"] for event in events}) == len(events)
    for event in events:
        assert event["user_id"] and event["session_id"] and event["device"] and event["category"]
        if event["event_type"] in ITEM_EVENT_TYPES:
            assert event["item_id"] and event["price"] > 0
        if event["event_type"] == SEARCH:
            assert event["item_id"] is None and event["price"] is None and event["search_query"]
        if event["event_type"].startswith("ad_"):
            assert event["campaign"] and event["utm_source"]


def test_event_times_lie_inside_their_day_in_utc(week):
    root, summary = week
    for ds in summary["days"]:
        times = [event["event_time"] for event in _read_day(root, ds)]
        assert all(t.startswith(f"{ds}T") and t.endswith("Z") for t in times)
        assert times == sorted(times)  # the collector lands events in arrival order


def test_personal_data_is_present_like_a_real_collector(events):
    emails = [event["email"] for event in events]
    assert 0.2 < sum(e is None for e in emails) / len(emails) < 0.8  # logged-in users only
    assert all(e is None or "@" in e for e in emails)
    assert all(event["ip_address"] and event["user_agent"] for event in events)


def test_funnel_narrows_from_views_to_carts_to_purchases(events):
    counts = Counter(event["event_type"] for event in events)
    assert counts[PURCHASE] < counts[ADD_TO_CART] < counts[PRODUCT_VIEW]
    assert counts[PURCHASE] > 0.2 * counts[ADD_TO_CART]


def test_the_most_frequent_next_item_is_far_above_chance(events):
    next_items: dict[str, Counter] = {}
    last_view: dict[str, str] = {}
    for event in events:  # events are in time order within each day
        if event["event_type"] == PRODUCT_VIEW:
            previous = last_view.get(event["session_id"])
            if previous is not None:
                next_items.setdefault(previous, Counter())[event["item_id"]] += 1
            last_view[event["session_id"]] = event["item_id"]
    frequent = [c for c in next_items.values() if sum(c.values()) >= 20]
    top_shares = sorted(c.most_common(1)[0][1] / sum(c.values()) for c in frequent)
    chance = 1 / SMALL["n_items"]
    assert len(frequent) > 20
    assert top_shares[len(top_shares) // 2] > 15 * chance


def test_users_come_back_on_other_days(events):
    days_by_user: dict[str, set] = {}
    for event in events:
        days_by_user.setdefault(event["user_id"], set()).add(event["event_time"][:10])
    returning = sum(len(days) >= 3 for days in days_by_user.values())
    assert returning > 0.3 * len(days_by_user)


def test_weekends_are_busier_than_midweek(week):
    _, summary = week
    per_day = summary["events_per_day"]
    assert per_day["2026-11-28"] > 1.15 * per_day["2026-11-24"]  # Saturday vs Tuesday


def test_sessions_hold_several_events_with_gaps(events):
    sessions = Counter(event["session_id"] for event in events)
    assert sum(sessions.values()) / len(sessions) > 4


def test_rejects_days_below_one(tmp_path):
    with pytest.raises(ValueError, match="days=0"):
        _generate(tmp_path, days=0)


def test_collector_noise_is_quarantined_and_reconciles(tmp_path):
    from datetime import UTC, datetime

    from pipelines.validation import validate_raw_events

    day = date(2026, 11, 25)
    generate_demo_clickstream(tmp_path / "raw", end_date=day, days=1, n_users=200, n_items=60,
                              events_per_day=2000, seed=3, collector_noise_rate=0.02)
    result = validate_raw_events(
        raw_partition=tmp_path / "raw" / "dt=2026-11-25", ds="2026-11-25",
        interval_start=datetime(2026, 11, 25, tzinfo=UTC), interval_end=datetime(2026, 11, 26, tzinfo=UTC),
        validated_partition=tmp_path / "validated", quarantine_partition=tmp_path / "quarantine",
        gx_project_dir=tmp_path / "gx", max_failure_rate=0.05)
    assert result.rows_in == result.rows_accepted + result.rows_quarantined
    assert result.rows_quarantined > 0
    assert {"duplicate_event_id", "malformed_json", "unknown_event_type", "missing_user_id"} <= set(result.reasons)


def test_the_demo_lands_the_days_catalog_with_a_few_items_out_of_stock(tmp_path):
    from pipelines.scoring.catalog import read_catalog

    events_root, catalog_root = tmp_path / "events", tmp_path / "catalog"
    _generate(events_root, days=2, catalog_root=catalog_root)
    catalog = read_catalog(catalog_root / f"dt={END.isoformat()}")
    assert catalog.num_rows == SMALL["n_items"] and len(set(catalog.column("item_id").to_pylist())) == SMALL["n_items"]
    sellable = [a and s > 0 for a, s in zip(catalog.column("available").to_pylist(),
                                            catalog.column("stock").to_pylist(), strict=True)]
    assert 0 < sellable.count(False) < SMALL["n_items"] * 0.15
    seen = {event["item_id"] for event in _read_day(events_root, END.isoformat()) if event.get("item_id")}
    assert seen <= set(catalog.column("item_id").to_pylist())  # the catalog lists every item the shop showed


def test_visitors_without_an_account_are_anonymous_and_customers_have_an_email(week):
    root, _ = week
    events = _read_day(root, END.isoformat())
    users = {(e.get("user_id"), e.get("email")) for e in events if isinstance(e.get("user_id"), str)}
    assert any(u.startswith("anon-") for u, _ in users) and any(u.startswith("U") for u, _ in users)
    assert all((email is None) == user.startswith("anon-") for user, email in users)
