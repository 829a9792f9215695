"""What a marketer asks for, as pure ``DataFrame -> DataFrame`` steps over the window's clean events.

- ``popularity_by_window``: per item, events and distinct users over the last 1, 7, 30 ... days;
- ``user_rfm``: per user, recency, frequency and monetary value, plus favourite categories;
- ``campaign_performance``: per campaign, impressions, clicks and click-through rate over the same windows;
- ``campaign_items``: per campaign, the items its ads showed (what scoring builds audiences for).

A window of ``w`` days ending at ``ds`` covers event times in ``[ds - w + 1, ds + 1)`` (UTC). Bot
events are excluded before these are called.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines.dates import window_bounds

WINDOW_DAYS = "window_days"
RANK = "rank"
RECENCY_DAYS, DAYS_SINCE_PURCHASE = "recency_days", "days_since_purchase"
N_SESSIONS, N_PURCHASES, MONETARY = "n_sessions", "n_purchases", "monetary"
FAVOURITE_CATEGORIES = "favourite_categories"
IMPRESSIONS, CLICKS, CTR = "impressions", "clicks", "ctr"


def window_start(ds: str, days: int):
    """The first instant of the ``days``-day window ending with ``ds`` (a timestamp literal, UTC session)."""
    if days < 1:
        raise ValueError(f"window of {days} days: must be >= 1")
    return F.to_timestamp(F.lit(window_bounds(ds, days)[0]))


def _by_window(events: DataFrame, ds: str, windows: Sequence[int], build) -> DataFrame:
    """``build`` applied to each trailing window, tagged ``window_days`` and stacked."""
    if not windows:
        raise ValueError("no windows given; e.g. [1, 7, 30]")
    frames = [build(events.filter(F.col(C.EVENT_TIME) >= window_start(ds, w))).withColumn(WINDOW_DAYS, F.lit(w))
              for w in sorted(set(windows))]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def popularity_by_window(events: DataFrame, vocab: DataFrame, ds: str, windows: Sequence[int] = (1, 7, 30),
                         user_col: str = C.USER_KEY, item_col: str = C.ITEM_ID, idx_col: str = C.ITEM_IDX) -> DataFrame:
    """(window_days, rank, item_idx, n_events, n_users): items by event count, ties by item_idx.

    One pass for all windows: events are first counted per (item, user) and window, then per item,
    so no window needs its own distinct count.
    """
    windows = sorted(set(windows))
    if not windows:
        raise ValueError("no windows given; e.g. [1, 7, 30]")
    item_events = events.filter(F.col(item_col).isNotNull()).join(
        F.broadcast(vocab.select(item_col, idx_col)), item_col, "inner")
    in_window = {w: F.col(C.EVENT_TIME) >= window_start(ds, w) for w in windows}
    per_user = item_events.groupBy(idx_col, user_col).agg(
        *[F.sum(cond.cast("long")).alias(f"_e{w}") for w, cond in in_window.items()])
    per_item = per_user.groupBy(idx_col).agg(
        *[F.sum(f"_e{w}").alias(f"_e{w}") for w in windows],
        *[F.sum((F.col(f"_e{w}") > 0).cast("long")).alias(f"_u{w}") for w in windows])
    stacked = F.explode(F.array(*[F.struct(F.lit(w).alias(WINDOW_DAYS), F.col(f"_e{w}").alias(C.N_EVENTS),
                                            F.col(f"_u{w}").alias(C.N_USERS)) for w in windows]))
    counts = per_item.select(idx_col, stacked.alias("_w")).select(idx_col, "_w.*").filter(F.col(C.N_EVENTS) > 0)
    order = Window.partitionBy(WINDOW_DAYS).orderBy(F.col(C.N_EVENTS).desc(), idx_col)
    return counts.select(WINDOW_DAYS, F.row_number().over(order).alias(RANK), idx_col, C.N_EVENTS, C.N_USERS)


def user_rfm(events: DataFrame, ds: str, top_categories: int = 3, user_col: str = C.USER_KEY,
             bucket_col: str = C.USER_BUCKET) -> DataFrame:
    """Per user over the window: recency (days since the last event / purchase), frequency, monetary, favourites.

    ``monetary`` sums the prices of purchases (a purchase without a price adds 0); ``favourite_categories``
    are the user's ``top_categories`` most frequent non-empty categories (ties by name).
    """
    end = F.to_date(F.lit(ds))
    is_purchase = F.col(C.EVENT_TYPE) == C.PURCHASE
    rfm = events.groupBy(user_col, bucket_col).agg(
        F.datediff(end, F.to_date(F.max(C.EVENT_TIME))).alias(RECENCY_DAYS),
        F.datediff(end, F.to_date(F.max(F.when(is_purchase, F.col(C.EVENT_TIME))))).alias(DAYS_SINCE_PURCHASE),
        F.countDistinct(C.SESSION_KEY).alias(N_SESSIONS),
        F.count(F.lit(1)).alias(C.N_EVENTS),
        F.sum(is_purchase.cast("int")).alias(N_PURCHASES),
        F.round(F.coalesce(F.sum(F.when(is_purchase, F.col(C.PRICE))), F.lit(0.0)), 2).alias(MONETARY),
    )
    return rfm.join(favourite_categories(events, top_categories, user_col), user_col, "left").withColumn(
        FAVOURITE_CATEGORIES, F.coalesce(FAVOURITE_CATEGORIES, F.array().cast("array<string>")))


def favourite_categories(events: DataFrame, top: int = 3, user_col: str = C.USER_KEY) -> DataFrame:
    """(user_key, favourite_categories): the ``top`` most frequent categories, most frequent first."""
    counts = events.filter(F.col(C.CATEGORY).isNotNull()).groupBy(user_col, C.CATEGORY).agg(F.count(F.lit(1)).alias("_n"))
    ranked = F.sort_array(F.collect_list(F.struct((-F.col("_n")).alias("_neg"), F.col(C.CATEGORY))))
    return counts.groupBy(user_col).agg(
        F.slice(F.transform(ranked, lambda s: s[C.CATEGORY]), 1, top).alias(FAVOURITE_CATEGORIES))


def campaign_performance(events: DataFrame, ds: str, windows: Sequence[int] = (1, 7, 30),
                         user_col: str = C.USER_KEY) -> DataFrame:
    """(window_days, campaign, impressions, clicks, ctr, users): ctr = clicks / impressions (null without any)."""
    ads = events.filter(F.col(C.CAMPAIGN).isNotNull() & F.col(C.EVENT_TYPE).isin(C.AD_IMPRESSION, C.AD_CLICK))

    def build(frame: DataFrame) -> DataFrame:
        return frame.groupBy(C.CAMPAIGN).agg(
            F.sum((F.col(C.EVENT_TYPE) == C.AD_IMPRESSION).cast("long")).alias(IMPRESSIONS),
            F.sum((F.col(C.EVENT_TYPE) == C.AD_CLICK).cast("long")).alias(CLICKS),
            F.countDistinct(user_col).alias(C.N_USERS))

    out = _by_window(ads, ds, windows, build)
    ctr = F.when(F.col(IMPRESSIONS) > 0, F.round(F.col(CLICKS) / F.col(IMPRESSIONS), 6))
    return out.select(WINDOW_DAYS, C.CAMPAIGN, IMPRESSIONS, CLICKS, ctr.alias(CTR), C.N_USERS)


def campaign_items(events: DataFrame, vocab: DataFrame, item_col: str = C.ITEM_ID, idx_col: str = C.ITEM_IDX
                   ) -> DataFrame:
    """(campaign, item_idx, n_events) over the window: the items a campaign's ads (impressions, clicks) showed.

    Scoring ranks users by how likely the champion thinks their next item is one of these: the
    campaign's audience. Only the ads count: the views a session goes on to after an ad keep its
    campaign tag but wander over the catalogue (on the demo, a campaign's ads stay in its category
    while the tagged views cover a third to half of all items).
    """
    tagged = events.filter(F.col(C.CAMPAIGN).isNotNull() & F.col(item_col).isNotNull()
                           & F.col(C.EVENT_TYPE).isin(C.AD_IMPRESSION, C.AD_CLICK))
    return (
        tagged.join(F.broadcast(vocab.select(item_col, idx_col)), item_col, "inner")
        .groupBy(C.CAMPAIGN, idx_col)
        .agg(F.count(F.lit(1)).alias(C.N_EVENTS))
        .orderBy(C.CAMPAIGN, idx_col)
    )
