"""A deterministic demo clickstream, landed the way a collector would land it.

One JSON Lines file a day, ``raw_events_root/dt=YYYY-MM-DD/events-00000.jsonl``, written atomically.
The shop and its users depend only on the seed and each day's events only on (seed, date), so a
rerun or a one-day backfill gives byte-identical files. See ``demo_world`` for the structure a
sequence model can learn (series, accessories, lasting interests) and ``demo_sessions`` for the
sessions, funnel, ads and weekday seasonality.

    python -m pipelines.demo.clickstream --raw-root var/lake/raw/events --end-date 2026-11-27 --days 14
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from pipelines import filesystem as fs
from pipelines.columns import EVENT_TYPES, RAW_COLUMNS, SEARCH
from pipelines.demo.sessions import CAMPAIGNS, SEARCH_PREFIXES, DayEvents, generate_day
from pipelines.demo.world import (
    CATEGORIES,
    DEVICES,
    USER_AGENTS,
    DemoCatalog,
    DemoUsers,
    build_catalog,
    build_users,
)
from pipelines.io import atomic_partition
from pipelines.lake import partition_path

EVENTS_FILE_NAME = "events-00000.jsonl"


def generate_demo_clickstream(
    raw_events_root: Path,
    end_date: date,
    days: int,
    n_users: int = 4_000,
    n_items: int = 1_000,
    events_per_day: int = 25_000,
    seed: int = 42,
    collector_noise_rate: float = 0.0,
    catalog_root: Path | None = None,
) -> dict:
    """Write ``days`` daily partitions ending at ``end_date`` (inclusive); return what was written.

    ``collector_noise_rate`` is the share of lines a real collector gets wrong (replayed events,
    truncated lines, unknown event types, lost user ids); validation must quarantine exactly those.
    With ``catalog_root``, the shop's catalog export of ``end_date`` lands there too
    (``dt=<end_date>/catalog.csv``: item_id, available, stock, price, category), a few items out of stock.
    """
    if days < 1 or events_per_day < 1:
        raise ValueError(f"days={days}, events_per_day={events_per_day}: both must be >= 1; "
                         f"pass positive values")
    catalog = build_catalog(n_items, seed)
    users = build_users(n_users, catalog, seed)
    first_day = end_date - timedelta(days=days - 1)
    events_written: dict[str, int] = {}
    paths: list[str] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        events = generate_day(catalog, users, day, events_per_day, seed)
        lines = _add_collector_noise(_to_json_lines(events, catalog, users, day), collector_noise_rate, seed, day)
        path = _write_day(Path(raw_events_root), day, lines)
        events_written[day.isoformat()] = len(lines)
        paths.append(str(path))
    if catalog_root is not None:
        paths.append(str(_write_catalog(Path(catalog_root), end_date, catalog, seed)))
    return {
        "raw_events_root": str(raw_events_root), "days": list(events_written),
        "events_per_day": events_written, "total_events": sum(events_written.values()), "paths": paths,
    }


OUT_OF_STOCK_SHARE = 0.03  # of the demo's items, on the catalog's day
CATALOG_FILE_NAME = "catalog.csv"


def _write_catalog(catalog_root: Path, day: date, catalog: DemoCatalog, seed: int) -> Path:
    """The day's catalog export as a shop's feed would give it (CSV; stock 0 or available false: not sellable)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng([seed, day.toordinal(), 11])
    n = len(catalog.item_ids)
    out_of_stock = rng.random(n) < OUT_OF_STOCK_SHARE
    stock = np.where(out_of_stock, 0, rng.integers(1, 500, n))
    table = pa.table({"item_id": catalog.item_ids.tolist(), "available": (rng.random(n) > 0.005).tolist(),
                      "stock": stock.tolist(), "price": np.round(catalog.price, 2).tolist(),
                      "category": [CATEGORIES[c][0] for c in catalog.item_category]})
    target = partition_path(catalog_root, day.isoformat())
    with atomic_partition(target) as staging:
        pacsv.write_csv(table, staging / CATALOG_FILE_NAME)
    return target / CATALOG_FILE_NAME


def _write_day(raw_events_root: Path, day: date, lines: list[str]) -> Path:
    target = partition_path(raw_events_root, day.isoformat())
    with atomic_partition(target) as staging:
        fs.write_text(staging / EVENTS_FILE_NAME, "\n".join(lines) + "\n")
    return target / EVENTS_FILE_NAME


def _to_json_lines(events: DayEvents, catalog: DemoCatalog, users: DemoUsers, day: date) -> list[str]:
    """One JSON object per event, keys in RAW_COLUMNS order, so the bytes are stable."""
    columns = _raw_columns(events, catalog, users, day)
    return [json.dumps(dict(zip(RAW_COLUMNS, row, strict=True)), separators=(",", ":"))
            for row in zip(*(columns[name] for name in RAW_COLUMNS), strict=True)]


NOISE_KINDS = ("replayed_event", "truncated_line", "unknown_event_type", "lost_user_id")


def _add_collector_noise(lines: list[str], rate: float, seed: int, day: date) -> list[str]:
    """Corrupt ``rate`` of the lines the way collectors do, deterministically per (seed, day)."""
    count = int(round(rate * len(lines)))
    if count == 0:
        return lines
    rng = np.random.default_rng([seed, day.toordinal(), 99])
    picked = np.sort(rng.choice(len(lines), size=count, replace=False))
    noisy, replays = list(lines), []
    for number, index in enumerate(picked.tolist()):
        kind = NOISE_KINDS[number % len(NOISE_KINDS)]
        if kind == "replayed_event":
            replays.append((index, lines[index]))
        elif kind == "truncated_line":
            noisy[index] = lines[index][: len(lines[index]) // 2]
        else:
            record = json.loads(lines[index])
            record.update({"event_type": "page_ping"} if kind == "unknown_event_type" else {"user_id": None})
            noisy[index] = json.dumps(record, separators=(",", ":"))
    for index, line in reversed(replays):  # a replay lands a few lines after the original
        noisy.insert(min(index + 3, len(noisy)), line)
    return noisy


def _raw_columns(events: DayEvents, catalog: DemoCatalog, users: DemoUsers, day: date) -> dict[str, list]:
    stamp = day.strftime("%Y%m%d")
    midnight = np.datetime64(day.isoformat(), "ms")
    has_item = events.item >= 0
    item = np.maximum(events.item, 0)
    has_campaign = events.campaign >= 0
    campaign = np.maximum(events.campaign, 0)
    device = np.array(DEVICES)[events.device]
    return {
        "event_id": [f"E{stamp}-{number:06d}" for number in range(1, len(events.time_ms) + 1)],
        "event_time": [f"{text}Z" for text in np.datetime_as_string(midnight + events.time_ms, unit="ms")],
        "user_id": users.user_ids[events.user].tolist(),
        "session_id": [f"S{stamp}-{number:05d}" for number in events.session.tolist()],
        "event_type": np.array(EVENT_TYPES)[events.event_type].tolist(),
        "item_id": _where(has_item, catalog.item_ids[item]),
        "category": np.array([name for name, _, _ in CATEGORIES])[events.category].tolist(),
        "price": _where(has_item, catalog.price[item]),
        "campaign": _where(has_campaign, np.array([c for c, _, _ in CAMPAIGNS])[campaign]),
        "utm_source": _where(has_campaign, np.array([s for _, _, s in CAMPAIGNS])[campaign]),
        "device": device.tolist(),
        "search_query": _search_queries(events),
        "email": [users.email[u] for u in events.user.tolist()],
        "ip_address": [users.ip_address[u] for u in events.user.tolist()],
        "user_agent": _user_agents(events, users, device),
    }


def _where(mask: np.ndarray, values: np.ndarray) -> list:
    """Python values where ``mask`` holds, None elsewhere (JSON null)."""
    return [value if keep else None for keep, value in zip(mask.tolist(), values.tolist(), strict=True)]


def _search_queries(events: DayEvents) -> list:
    is_search = events.event_type == EVENT_TYPES.index(SEARCH)
    prefixes = np.array(SEARCH_PREFIXES)[np.maximum(events.search_prefix, 0)]
    categories = np.array([name.replace("_", " ") for name, _, _ in CATEGORIES])[events.category]
    return _where(is_search, np.char.add(prefixes, categories))


def _user_agents(events: DayEvents, users: DemoUsers, device: np.ndarray) -> list:
    """The user's own browser, or the first known one of the device they switched to."""
    usual = users.device[events.user] == events.device
    return [users.user_agent[u] if same else USER_AGENTS[d][0]
            for u, same, d in zip(events.user.tolist(), usual.tolist(), device.tolist(), strict=True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo.clickstream", description="Write a deterministic demo clickstream as raw JSON Lines.")
    parser.add_argument("--raw-root", type=Path, required=True, help="root of raw events; gets dt=YYYY-MM-DD/")
    parser.add_argument("--end-date", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=14, help="number of days ending at --end-date")
    parser.add_argument("--users", type=int, default=4_000, help="number of distinct users")
    parser.add_argument("--items", type=int, default=1_000, help="number of catalog items")
    parser.add_argument("--events-per-day", type=int, default=25_000, help="average events a day")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same bytes")
    args = parser.parse_args(argv)
    summary = generate_demo_clickstream(args.raw_root, args.end_date, args.days, args.users, args.items,
                                        args.events_per_day, args.seed)
    print(json.dumps({key: summary[key] for key in ("raw_events_root", "events_per_day", "total_events")},
                     indent=2))


if __name__ == "__main__":
    main()
