"""The stable item vocabulary (item_id -> item_idx) and item popularity over the window.

item_idx is 1-based (0 is the padding index of the sequence models) and append-only: an item keeps
its index for life, so embeddings trained on earlier nights still line up. New items take the next
indices in order of first appearance, then item_id, so the same inputs always give the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines.dates import shift

VOCAB_COLUMNS = (C.ITEM_ID, C.ITEM_IDX, C.CATEGORY, C.FIRST_SEEN_DT)


def _first_sightings(events: DataFrame, ds: str, item_col: str, time_col: str, event_id_col: str,
                     category_col: str) -> DataFrame:
    """One row per item: (item, category, time) of its earliest event up to the end of ``ds`` (UTC), ties by id.

    ``min`` of a (time, event_id, category) struct per item: a hash aggregation that combines within
    each partition before the shuffle, instead of a window that shuffles and sorts every event.
    """
    end = shift(ds, 1)
    earliest = F.min(F.struct(F.col(time_col).alias("_first_time"), F.col(event_id_col).alias("_id"),
                              F.col(category_col).alias(category_col)))
    return (
        events.filter(F.col(item_col).isNotNull() & (F.col(time_col) < F.to_timestamp(F.lit(end))))
        .groupBy(item_col)
        .agg(earliest.alias("_first"))
        .select(item_col, f"_first.{category_col}", "_first._first_time")
    )


def update_item_vocab(
    previous_vocab: DataFrame | None,
    events: DataFrame,
    ds: str,
    item_col: str = C.ITEM_ID,
    idx_col: str = C.ITEM_IDX,
    category_col: str = C.CATEGORY,
    first_seen_col: str = C.FIRST_SEEN_DT,
    time_col: str = C.EVENT_TIME,
    event_id_col: str = C.EVENT_ID,
) -> DataFrame:
    """Previous vocabulary plus the items of ``events`` it lacks, with the next item_idx values.

    Rows of ``previous_vocab`` are kept unchanged (index, category and first_seen_dt). A new item's
    ``category`` and ``first_seen_dt`` (UTC date, ``YYYY-MM-DD``) come from its earliest event (ties
    by event_id); new indices follow (first seen time, item_id). Events after ``ds`` are ignored, so
    a backfill of ``ds`` depends only on data up to ``ds``. ``previous_vocab=None`` starts at 1.
    """
    first = _first_sightings(events, ds, item_col, time_col, event_id_col, category_col)
    new_order = Window.orderBy("_first_time", item_col)  # one partition: the vocabulary is small
    if previous_vocab is None:
        new_items, offset = first, F.lit(0)
    else:
        previous_vocab = previous_vocab.select(item_col, idx_col, category_col, first_seen_col)
        new_items = first.join(previous_vocab.select(item_col), item_col, "left_anti")
        max_idx = previous_vocab.agg(F.coalesce(F.max(idx_col), F.lit(0)).cast("int").alias("_offset"))
        new_items, offset = new_items.crossJoin(max_idx), F.col("_offset")
    appended = new_items.select(
        item_col,
        (F.row_number().over(new_order) + offset).cast("int").alias(idx_col),
        category_col,
        F.date_format("_first_time", "yyyy-MM-dd").alias(first_seen_col),
    )
    if previous_vocab is None:
        return appended
    previous = previous_vocab.withColumn(idx_col, F.col(idx_col).cast("int"))
    return previous.unionByName(appended)


def item_popularity(
    events: DataFrame,
    vocab: DataFrame,
    event_types: Sequence[str] | None = None,
    user_col: str = C.USER_KEY,
    item_col: str = C.ITEM_ID,
    idx_col: str = C.ITEM_IDX,
    type_col: str = C.EVENT_TYPE,
    n_events_col: str = C.N_EVENTS,
    n_users_col: str = C.N_USERS,
) -> DataFrame:
    """Per item_idx seen in ``events``: event count and distinct users (all item events, or ``event_types``)."""
    item_events = events.filter(F.col(item_col).isNotNull())
    if event_types is not None:
        item_events = item_events.filter(F.col(type_col).isin(list(event_types)))
    return (
        item_events.join(vocab.select(item_col, idx_col), item_col, "inner")
        .groupBy(idx_col)
        .agg(F.count(F.lit(1)).alias(n_events_col), F.countDistinct(user_col).alias(n_users_col))
        .orderBy(F.col(n_events_col).desc(), idx_col)
    )
