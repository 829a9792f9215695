"""One day of demo sessions as numpy arrays: who visits, which items they walk through, what they do.

A session starts from the user's place in their favourite series (continuing where they were the
day before), from a popular item of one of their interests, or from an ad click. It then walks
item to item, mostly along each item's "next" items. Around every product view the funnel adds a
search before it, an add-to-cart after it and sometimes a purchase; ad impressions are sprinkled in.
All randomness comes from the day's generator, so a day depends only on (seed, date).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from pipelines.columns import (
    AD_CLICK,
    AD_IMPRESSION,
    ADD_TO_CART,
    EVENT_TYPES,
    PRODUCT_VIEW,
    PURCHASE,
    SEARCH,
)
from pipelines.demo.world import CATEGORIES, DEVICES, DemoCatalog, DemoUsers, sample_popular_items

# (campaign, promoted category, utm_source)
CAMPAIGNS = (
    ("black_friday_consoles", "consoles", "google"),
    ("winter_reading", "books", "newsletter"),
    ("audio_week", "headphones", "facebook"),
    ("camera_days", "cameras", "instagram"),
    ("kitchen_refresh", "kitchen", "tiktok"),
    ("toy_festival", "toys", "facebook"),
)
SEARCH_PREFIXES = ("", "best ", "cheap ", "new ", "gift ")
WEEKDAY_FACTOR = np.array([0.92, 0.88, 0.9, 0.95, 1.05, 1.22, 1.08])  # Monday..Sunday: busier weekends
WEEKDAY_FACTOR = WEEKDAY_FACTOR / WEEKDAY_FACTOR.mean()
HOURLY_WEIGHT = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 12, 12, 10, 7, 4], float)
MEAN_EVENTS_PER_SESSION = 8.0  # measured on the generator; turns events_per_day into sessions
MAX_VIEWS = 24
P_CONTINUE_SERIES, P_FROM_AD = 0.45, 0.15  # how a session starts
P_FOLLOW_NEXT, P_SAME_INTEREST = 0.65, 0.27  # each step; the rest wanders anywhere
NEXT_ITEM_SHARES = (0.5, 0.3, 0.2)  # next volume, complement, similar
P_SEARCH_FIRST, P_SEARCH_LATER, P_CART, P_PURCHASE_AFTER_CART, P_ONSITE_AD = 0.25, 0.04, 0.11, 0.45, 0.05
SLOTS = 5  # event order around view t: search 5t, view 5t+1, cart 5t+2, purchase 5t+3, ad 5t+4
DAY_MS = 86_400_000


@dataclass(frozen=True)
class DayEvents:
    """One day's events in time order; indexes point into the catalog, users and the tables above."""

    time_ms: np.ndarray  # milliseconds since midnight UTC
    session: np.ndarray
    user: np.ndarray
    event_type: np.ndarray  # index into EVENT_TYPES
    item: np.ndarray  # -1 for searches
    category: np.ndarray
    campaign: np.ndarray  # -1 outside ad events and ad-started sessions
    search_prefix: np.ndarray  # index into SEARCH_PREFIXES, -1 outside searches
    device: np.ndarray


def generate_day(catalog: DemoCatalog, users: DemoUsers, day: date, events_per_day: int, seed: int) -> DayEvents:
    """The events of ``day``: about ``events_per_day`` times the weekday factor."""
    rng = np.random.default_rng([seed, 3, day.toordinal()])
    n_sessions = max(1, round(events_per_day * WEEKDAY_FACTOR[day.weekday()] / MEAN_EVENTS_PER_SESSION))
    starts = _start_sessions(catalog, users, day, n_sessions, rng)
    views = _walk_items(catalog, starts["item"], starts["category"], rng)
    parts = _expand_funnel(catalog, starts, views, rng)
    return _order_in_time(parts, starts, rng)


def _start_sessions(catalog: DemoCatalog, users: DemoUsers, day: date, n: int, rng: np.random.Generator) -> dict:
    user = rng.choice(len(users.user_ids), n, p=users.activity)
    slot = (rng.random(n)[:, None] > users.interest_cdf[user]).sum(axis=1)
    category = users.interests[user, np.minimum(slot, 2)]
    item = sample_popular_items(catalog, category, rng)
    continuing = rng.random(n) < P_CONTINUE_SERIES
    favourite = users.interests[user, 0]
    position = (users.series_offset[user] + day.toordinal() * users.series_pace[user]) % catalog.block_size[favourite]
    item = np.where(continuing, catalog.block_start[favourite] + position, item)
    category = np.where(continuing, favourite, category)
    from_ad = rng.random(n) < P_FROM_AD
    campaign = np.where(from_ad, rng.integers(0, len(CAMPAIGNS), n), -1)
    item = np.where(from_ad, sample_popular_items(catalog, _campaign_category(np.maximum(campaign, 0)), rng), item)
    category = np.where(from_ad, catalog.item_category[item], category)
    switched = rng.random(n) < 0.1  # the same person on another device now and then
    device = np.where(switched, rng.integers(0, len(DEVICES), n), users.device[user])
    return {"user": user, "category": category, "item": item, "campaign": campaign, "device": device}


def _campaign_category(campaign: np.ndarray) -> np.ndarray:
    index_of = {name: index for index, (name, _, _) in enumerate(CATEGORIES)}
    return np.array([index_of[category] for _, category, _ in CAMPAIGNS])[campaign]


def _walk_items(catalog: DemoCatalog, first: np.ndarray, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_sessions, MAX_VIEWS) viewed item indexes, -1 after the session's last view."""
    n = len(first)
    n_views = np.minimum(1 + rng.geometric(0.2, n), MAX_VIEWS)
    views = np.full((n, MAX_VIEWS), -1, dtype=np.int64)
    views[:, 0] = current = first
    n_items = len(catalog.item_ids)
    for step in range(1, int(n_views.max())):
        draw = rng.random(n)
        follow = catalog.next_items[current, rng.choice(3, n, p=NEXT_ITEM_SHARES)]
        interest = sample_popular_items(catalog, category, rng)
        anywhere = rng.choice(n_items, n, p=catalog.global_popularity)
        current = np.where(draw < P_FOLLOW_NEXT, follow,
                           np.where(draw < P_FOLLOW_NEXT + P_SAME_INTEREST, interest, anywhere))
        views[:, step] = np.where(step < n_views, current, -1)
    return views


def _expand_funnel(catalog: DemoCatalog, starts: dict, views: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Events as parts (one dict of equal-length arrays each) with an order key inside the session."""
    session, step = np.nonzero(views >= 0)
    item = views[session, step]
    m = len(item)
    from_ad = starts["campaign"][session] >= 0
    searched = rng.random(m) < np.where(step == 0, np.where(from_ad, 0.0, P_SEARCH_FIRST), P_SEARCH_LATER)
    carted = rng.random(m) < P_CART
    bought = carted & (rng.random(m) < P_PURCHASE_AFTER_CART)
    onsite = rng.random(m) < P_ONSITE_AD
    ad_campaign = rng.integers(0, len(CAMPAIGNS), m)
    ad_item = sample_popular_items(catalog, _campaign_category(ad_campaign), rng)
    ad_start = (step == 0) & from_ad
    key = SLOTS * step
    no_item = np.full(m, -1)
    parts = [
        _part(catalog, session[searched], key[searched], SEARCH, no_item[searched], item[searched]),
        _part(catalog, session, key + 1, PRODUCT_VIEW, item),
        _part(catalog, session[carted], key[carted] + 2, ADD_TO_CART, item[carted]),
        _part(catalog, session[bought], key[bought] + 3, PURCHASE, item[bought]),
        _part(catalog, session[onsite], key[onsite] + 4, AD_IMPRESSION, ad_item[onsite],
              campaign=ad_campaign[onsite]),
        _part(catalog, session[ad_start], key[ad_start] - 2, AD_IMPRESSION, item[ad_start]),
        _part(catalog, session[ad_start], key[ad_start] - 1, AD_CLICK, item[ad_start]),
    ]
    parts[0]["search_prefix"] = rng.integers(0, len(SEARCH_PREFIXES), len(parts[0]["session"]))
    return parts


def _part(catalog: DemoCatalog, session, key, event_type: str, item, context_item=None, campaign=None) -> dict:
    """Events of one type; ``context_item`` gives a search its category (the item it leads to)."""
    n = len(session)
    category_item = item if context_item is None else context_item
    return {
        "session": session, "key": key, "item": item, "category": catalog.item_category[category_item],
        "event_type": np.full(n, EVENT_TYPES.index(event_type)),
        "campaign": np.full(n, -1) if campaign is None else campaign, "search_prefix": np.full(n, -1),
    }


def _order_in_time(parts: list[dict], starts: dict, rng: np.random.Generator) -> DayEvents:
    cols = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    by_session = np.lexsort((cols["key"], cols["session"]))
    cols = {name: values[by_session] for name, values in cols.items()}
    session = cols["session"]
    time_ms = _session_times(session, len(starts["user"]), rng)
    in_time = np.lexsort((cols["key"], session, time_ms))
    campaign = np.where(cols["campaign"] >= 0, cols["campaign"], starts["campaign"][session])
    return DayEvents(
        time_ms=time_ms[in_time], session=session[in_time], user=starts["user"][session][in_time],
        event_type=cols["event_type"][in_time], item=cols["item"][in_time],
        category=cols["category"][in_time], campaign=campaign[in_time],
        search_prefix=cols["search_prefix"][in_time], device=starts["device"][session][in_time],
    )


def _session_times(session: np.ndarray, n_sessions: int, rng: np.random.Generator) -> np.ndarray:
    """Milliseconds since midnight for events sorted by session: a start hour, then realistic gaps."""
    gaps = np.clip(rng.lognormal(np.log(35_000), 0.9, len(session)), 800, 900_000).astype(np.int64)
    counts = np.bincount(session, minlength=n_sessions)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gaps[first] = 0  # every session has at least one view
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], counts)
    duration = np.zeros(n_sessions, dtype=np.int64)
    np.maximum.at(duration, session, elapsed)
    hour = rng.choice(24, n_sessions, p=HOURLY_WEIGHT / HOURLY_WEIGHT.sum())
    start = hour * 3_600_000 + rng.integers(0, 3_600_000, n_sessions)
    start = np.clip(start, 0, DAY_MS - 1 - duration)
    return start[session] + elapsed
