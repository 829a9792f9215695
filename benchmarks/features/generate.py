"""Generate a clickstream of N events, vectorised, in the validated layout: ``root/dt=D/part-00000.parquet``.

Sessions of geometric length (mean 8) by users drawn uniformly; items by a skewed popularity; the
mix of event types of a shop with ads. On top: 1% exact duplicate rows (a collector's retries) and a
few bot sessions (200 events in a minute), so the job's dedup and bot rules have work to do. Same
(n_events, days, seed) -> same files. 10M events take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines.io import atomic_partition
from pipelines.lake import partition_path

TYPES = np.array([C.PRODUCT_VIEW, C.ADD_TO_CART, C.PURCHASE, C.AD_IMPRESSION, C.AD_CLICK, C.SEARCH])
TYPE_SHARES = np.array([0.80, 0.10, 0.04, 0.03, 0.01, 0.02])
DUPLICATE_SHARE, BOT_SESSIONS_PER_MILLION, BOT_EVENTS = 0.01, 5, 200


def _strings(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")


def _sessions(n_events: int, n_users: int, seconds: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session index, user, event time in epoch microseconds) of n_events events, sessions contiguous."""
    lengths = rng.geometric(1 / 8, size=n_events // 4 + 16)
    ends = np.cumsum(lengths)
    lengths = lengths[: np.searchsorted(ends, n_events) + 1]
    session = np.repeat(np.arange(len(lengths)), lengths)[:n_events]
    gaps = rng.exponential(60e6, size=n_events).astype(np.int64)  # mean 1 minute between a session's events
    first = np.r_[0, np.flatnonzero(np.diff(session)) + 1]
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], np.diff(np.r_[first, n_events]))
    start = rng.integers(0, seconds - 4 * 3600, size=len(lengths)) * 1_000_000
    return session, rng.integers(0, n_users, size=len(lengths))[session], start[session] + offset


def generate(root: Path, n_events: int, days: int = 7, end: str = "2026-11-27", seed: int = 11) -> dict:
    """Write ~n_events rows (duplicates and bot events included) over ``days`` days ending at ``end``."""
    rng = np.random.default_rng(seed)
    first_day = dt.date.fromisoformat(end) - dt.timedelta(days=days - 1)
    origin = int(dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000
    n_users, n_items = max(1000, n_events // 20), max(1000, n_events // 200)
    session, user, micros = _sessions(n_events, n_users, days * 86400, rng)
    n_bots = max(1, BOT_SESSIONS_PER_MILLION * n_events // 1_000_000)
    bot_at = rng.choice(n_events - BOT_EVENTS, size=n_bots, replace=False)
    for k, at in enumerate(bot_at):  # overwrite a stretch with one bot session: 200 events in 60 s
        span = slice(at, at + BOT_EVENTS)
        session[span], user[span] = -1 - k, n_users + k
        micros[span] = micros[at] + np.arange(BOT_EVENTS) * 300_000
    item = (n_items * rng.random(n_events) ** 3).astype(np.int64)  # skewed: low ids are popular
    kind = rng.choice(len(TYPES), size=n_events, p=TYPE_SHARES)
    dupes = rng.choice(n_events, size=int(n_events * DUPLICATE_SHARE), replace=False)
    rows = np.r_[np.arange(n_events), dupes]
    table = _table(rows, session, user, micros + origin, item, kind, rng)
    return _write_days(root, table, micros[rows] + origin, first_day, days)


def _table(rows, session, user, micros, item, kind, rng) -> pa.Table:
    kind, item = kind[rows], item[rows]
    has_item = TYPES[kind] != C.SEARCH
    is_ad = np.isin(TYPES[kind], [C.AD_IMPRESSION, C.AD_CLICK])
    category = np.where(item % 20 == 0, -1, item % 50)  # 5% of items have no category
    price = np.round(np.exp(3 + (item % 97) / 40), 2)
    n = len(rows)
    return pa.table({
        C.EVENT_ID: _strings("e", rows),
        C.EVENT_TIME: pa.array(micros[rows], pa.timestamp("us", tz="UTC")),
        C.USER_ID: _strings("u", user[rows]),
        C.SESSION_ID: _strings("s", session[rows]),
        C.EVENT_TYPE: pa.array(TYPES[kind]),
        C.ITEM_ID: pc.if_else(pa.array(has_item), _strings("i", item), pa.nulls(n, pa.string())),
        C.CATEGORY: pc.if_else(pa.array(has_item & (category >= 0)), _strings("c", category), pa.nulls(n, pa.string())),
        C.PRICE: pa.array(np.where(has_item, price, np.nan), from_pandas=True),
        C.CAMPAIGN: pc.if_else(pa.array(is_ad), _strings("camp", item % 12), pa.nulls(n, pa.string())),
        C.UTM_SOURCE: pa.nulls(n, pa.string()),
        C.DEVICE: pa.array(np.array(["web", "mobile", "app"])[rng.integers(0, 3, n)]),
        **{c: pa.nulls(n, pa.string()) for c in (C.SEARCH_QUERY, C.EMAIL, C.IP_ADDRESS, C.USER_AGENT)},
    })


def _write_days(root: Path, table: pa.Table, micros: np.ndarray, first_day: dt.date, days: int) -> dict:
    day_index = ((micros // 1_000_000 - int(dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC).timestamp()))
                 // 86400).clip(0, days - 1)
    counts = {}
    for offset in range(days):
        day = (first_day + dt.timedelta(days=offset)).isoformat()
        part = table.filter(pa.array(day_index == offset))
        with atomic_partition(partition_path(root, day)) as staging:
            pq.write_table(part, staging / "part-00000.parquet", row_group_size=1_000_000)
        counts[day] = part.num_rows
    return {"root": str(root), "events": table.num_rows, "days": counts}
