"""The tables a night writes from the window's clean events, by name (the folder each is written to).

Pure: takes the window's clean non-bot events, the night's vocabulary and the job's settings, and
returns ``{folder: DataFrame}``; the job writes them. ``core`` is what the benchmark compares with
DuckDB (sequences and popularity); ``all`` adds the marketer's tables.
"""

from __future__ import annotations

from argparse import Namespace

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines.features import aggregates, transforms, vocab

SEQUENCES_DIR = "sequences"
POPULARITY_WINDOWS_DIR = "item_popularity_windows"
CAMPAIGN_ITEMS_DIR = "campaign_items"
CORE_OUTPUTS = (SEQUENCES_DIR, POPULARITY_WINDOWS_DIR)


def build_outputs(events: DataFrame, item_vocab: DataFrame, args: Namespace) -> dict[str, DataFrame]:
    sequences = transforms.build_item_sequences(
        events, item_vocab, args.sequence_event_types, args.max_seq_len, args.min_seq_len)
    outputs = {
        SEQUENCES_DIR: transforms.add_padded_sequence(sequences, args.max_seq_len + 2).sortWithinPartitions(C.USER_KEY),
        POPULARITY_WINDOWS_DIR: aggregates.popularity_by_window(events, item_vocab, args.ds, args.popularity_windows)
        .orderBy(aggregates.WINDOW_DAYS, aggregates.RANK),
    }
    if args.outputs == "core":
        return outputs
    outputs.update({
        "item_popularity": vocab.item_popularity(events, item_vocab),
        "user_rfm": aggregates.user_rfm(events, args.ds, args.favourite_categories).sortWithinPartitions(C.USER_KEY),
        "campaign_performance": aggregates.campaign_performance(events, args.ds, args.popularity_windows)
        .orderBy(aggregates.WINDOW_DAYS, C.CAMPAIGN),
        CAMPAIGN_ITEMS_DIR: aggregates.campaign_items(events, item_vocab),
        "sessions_summary": transforms.summarize_sessions(events),
    })
    return outputs


def window_totals(events: DataFrame) -> dict[str, int]:
    """Sessions and users of the window (non-bot), for the stats."""
    row = events.agg(F.countDistinct(C.SESSION_KEY).alias("sessions"), F.countDistinct(C.USER_KEY).alias("users")).first()
    return {"sessions": int(row["sessions"]), "users": int(row["users"])}
