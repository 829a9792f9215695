"""The tables a night writes from the window's clean events, by name (the folder each is written to).

Pure: takes the window's clean non-bot events, the night's vocabulary and the job's settings, and
returns ``{folder: DataFrame}``; the job writes them. ``core`` is what the benchmark compares with
DuckDB (sequences and popularity); ``all`` adds the marketer's tables.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines import lake
from pipelines.config import FeaturesConfig
from pipelines.features import aggregates, transforms, vocab

CORE_OUTPUTS = (lake.SEQUENCES, lake.ITEM_POPULARITY_WINDOWS)


def build_outputs(events: DataFrame, item_vocab: DataFrame, settings: FeaturesConfig, ds: str,
                  outputs: str = "all") -> dict[str, DataFrame]:
    """``{folder: DataFrame}`` of the window; ``outputs="core"`` stops at CORE_OUTPUTS."""
    sequences = transforms.build_item_sequences(
        events, item_vocab, settings.sequence_event_types, settings.max_seq_len, settings.min_seq_len)
    tables = {
        lake.SEQUENCES: transforms.add_padded_sequence(sequences, settings.max_seq_len + 2)
        .sortWithinPartitions(C.USER_KEY),
        lake.ITEM_POPULARITY_WINDOWS: aggregates.popularity_by_window(events, item_vocab, ds,
                                                                      settings.popularity_windows)
        .orderBy(aggregates.WINDOW_DAYS, aggregates.RANK),
    }
    if outputs == "core":
        return tables
    tables.update({
        lake.ITEM_POPULARITY: vocab.item_popularity(events, item_vocab),
        lake.USER_RFM: aggregates.user_rfm(events, ds, settings.favourite_categories).sortWithinPartitions(C.USER_KEY),
        lake.CAMPAIGN_PERFORMANCE: aggregates.campaign_performance(events, ds, settings.popularity_windows)
        .orderBy(aggregates.WINDOW_DAYS, C.CAMPAIGN),
        lake.CAMPAIGN_ITEMS: aggregates.campaign_items(events, item_vocab),
        lake.SESSIONS_SUMMARY: transforms.summarize_sessions(events),
    })
    return tables


def window_totals(events: DataFrame) -> dict[str, int]:
    """Events, sessions and users of the window (non-bot), for the stats: one Spark job of their own."""
    row = events.agg(F.count(F.lit(1)).alias("events"), F.countDistinct(C.SESSION_KEY).alias("sessions"),
                     F.countDistinct(C.USER_KEY).alias("users")).first()
    return {"events_in_window": int(row["events"]), "sessions": int(row["sessions"]), "users": int(row["users"])}

