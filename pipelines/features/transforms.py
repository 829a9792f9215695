"""Pure ``DataFrame -> DataFrame`` feature steps: privacy, sessions and item sequences (dedup: ``cleaning``).

Every function takes its column names as defaulted parameters (from ``pipelines.columns``) and never
creates a Spark session, so a test calls it on a three-row frame. Orderings that could tie are broken
by ``event_id`` so that a rerun gives the same rows in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines import columns as C

DEFAULT_SEQUENCE_EVENT_TYPES = (C.PRODUCT_VIEW, C.ADD_TO_CART, C.PURCHASE)
_SHA256_BLOCK_BYTES = 64
ITEM_SEQ_PADDED = "item_seq_padded"  # the sequence's last max_seq_len + 2 items, left-padded with 0
SEQ_LEN = "seq_len"  # items in item_seq
# Hex digits of the user key that feed the bucket: 15 hex digits = 60 bits, fits a signed bigint.
_BUCKET_HEX_DIGITS = 15


def drop_personal_data(df: DataFrame, personal_columns: Sequence[str] = C.PERSONAL_DATA_COLUMNS) -> DataFrame:
    """Drop the personal data columns (those present); nothing personal leaves the feature job."""
    return df.drop(*personal_columns)


def _hmac_pads(key: bytes) -> tuple[str, str]:
    """Hex of (K xor ipad, K xor opad) for HMAC-SHA256 (RFC 2104), K zero-padded to the block size."""
    if not key:
        raise ValueError("HMAC key is empty; pass the secret user-hash key (see --hash-key-env)")
    if len(key) > _SHA256_BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK_BYTES, b"\x00")
    inner = bytes(b ^ 0x36 for b in key)
    outer = bytes(b ^ 0x5C for b in key)
    return inner.hex(), outer.hex()


def hmac_sha256_hex(message: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column (UTF-8), as lowercase hex, computed in the JVM (no Python UDF).

    HMAC(K, m) = H((K xor opad) || H((K xor ipad) || m)). The padded key is a literal in the plan; the
    job redacts it from plans and the UI with ``spark.sql.redaction.string.regex``.
    """
    inner_pad, outer_pad = _hmac_pads(key)
    inner = F.sha2(F.concat(F.unhex(F.lit(inner_pad)), F.encode(message, "UTF-8")), 256)
    return F.sha2(F.concat(F.unhex(F.lit(outer_pad)), F.unhex(inner)), 256)


def user_bucket(user_key: Column, n_buckets: int) -> Column:
    """Stable int in [0, n_buckets): the first 60 bits of the hex user key, modulo ``n_buckets``.

    Python equivalent (for serving): ``int(user_key[:15], 16) % n_buckets``. Buckets change only if the
    HMAC key or ``n_buckets`` change.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets={n_buckets}: must be >= 1")
    head = F.conv(F.substring(user_key, 1, _BUCKET_HEX_DIGITS), 16, 10).cast("bigint")
    return F.pmod(head, F.lit(n_buckets)).cast("int")


def pseudonymize_users(
    df: DataFrame,
    key: bytes,
    n_buckets: int = 100_000,
    user_col: str = C.USER_ID,
    user_key_col: str = C.USER_KEY,
    bucket_col: str = C.USER_BUCKET,
) -> DataFrame:
    """Replace ``user_id`` by its keyed hash (``user_key``, hex HMAC-SHA256) and a ``user_bucket``."""
    return (
        df.withColumn(user_key_col, hmac_sha256_hex(F.col(user_col), key))
        .withColumn(bucket_col, user_bucket(F.col(user_key_col), n_buckets))
        .drop(user_col)
    )


def pseudonymize_each_user_once(
    df: DataFrame,
    users: DataFrame,
    key: bytes,
    n_buckets: int = 100_000,
    user_col: str = C.USER_ID,
    user_key_col: str = C.USER_KEY,
    bucket_col: str = C.USER_BUCKET,
) -> DataFrame:
    """``pseudonymize_users`` with the HMAC computed once per distinct user instead of once per row.

    ``users`` holds at least every ``user_col`` value of ``df`` (it may hold more: a superset read from
    fewer columns is cheaper than the filtered frame); its distinct ids are hashed and broadcast to a
    left join, so ``df`` is neither shuffled nor hashed row by row. Same columns and values as
    ``pseudonymize_users``: a null id gets a null key and bucket either way. The caller bounds the
    number of distinct users (they are broadcast).
    """
    keyed = pseudonymize_users(users.select(user_col).distinct().withColumn("_id", F.col(user_col)), key,
                               n_buckets, user_col=user_col, user_key_col=user_key_col, bucket_col=bucket_col)
    return df.join(F.broadcast(keyed.withColumnRenamed("_id", user_col)), user_col, "left").drop(user_col)


def build_sessions(
    df: DataFrame,
    gap_minutes: int = 30,
    user_col: str = C.USER_KEY,
    time_col: str = C.EVENT_TIME,
    event_id_col: str = C.EVENT_ID,
    session_col: str | None = C.SESSION_KEY,
    split_col: str | None = None,
    start_col: str | None = None,
) -> DataFrame:
    """Add ``session_key``: a user's events split where the inactivity gap is *longer* than ``gap_minutes``.

    A gap of exactly ``gap_minutes`` stays in the session; one microsecond more starts a new one. Input
    order does not matter (events are ordered by time, then event_id). The key is
    ``<user_key>:<session start, epoch microseconds>``, so it does not depend on the window start.
    With ``split_col`` (the landing day), sessions never span two of its values: events are ordered by
    it first and a change starts a new session, so each landed day's sessions are computed once.
    One window (one sort per user), no second pass: the start is a running max of session starts.
    ``start_col`` also keeps that start (epoch microseconds, a long); with ``session_col=None`` it is
    the only column added (the key is then built by the caller, e.g. after pseudonymising the user).
    """
    if gap_minutes <= 0:
        raise ValueError(f"gap_minutes={gap_minutes}: must be > 0")
    order = ([split_col] if split_col else []) + [time_col, event_id_col]
    by_time = Window.partitionBy(user_col).orderBy(*order)
    running = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    micros = F.unix_micros(F.col(time_col))
    prev_micros = F.lag(micros).over(by_time)
    is_new = prev_micros.isNull() | (micros - prev_micros > gap_minutes * 60 * 1_000_000)
    if split_col:
        is_new = is_new | (F.lag(split_col).over(by_time) != F.col(split_col))
    start = F.max(F.when(F.col("_new"), micros)).over(running)
    out = df.withColumn("_new", is_new)
    if start_col:
        out, start = out.withColumn(start_col, start), F.col(start_col)
    if session_col:
        out = out.withColumn(session_col, session_key(F.col(user_col), start))
    return out.drop("_new")


def session_key(user: Column, start_micros: Column) -> Column:
    """``<user>:<session start, epoch microseconds>``."""
    return F.concat_ws(":", user, start_micros.cast("string"))


def summarize_sessions(
    sessions: DataFrame,
    user_col: str = C.USER_KEY,
    time_col: str = C.EVENT_TIME,
    session_col: str = C.SESSION_KEY,
) -> DataFrame:
    """One row per session start day (UTC): sessions, users, events and session length statistics."""
    per_session = sessions.groupBy(user_col, session_col).agg(
        F.count(F.lit(1)).alias("events"),
        F.min(time_col).alias("_start"),
        (F.unix_micros(F.max(time_col)) - F.unix_micros(F.min(time_col))).alias("_micros"),
    )
    return (
        per_session.groupBy(F.date_format("_start", "yyyy-MM-dd").alias("dt"))
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            F.countDistinct(user_col).alias("users"),
            F.sum("events").alias("events"),
            F.round(F.avg("events"), 3).alias("avg_events_per_session"),
            F.round(F.avg("_micros") / 1e6, 3).alias("avg_duration_seconds"),
        )
        .orderBy("dt")
    )


def build_item_sequences(
    events: DataFrame,
    vocab: DataFrame,
    event_types: Sequence[str] = DEFAULT_SEQUENCE_EVENT_TYPES,
    max_seq_len: int = 50,
    min_seq_len: int = 3,
    collapse_repeats: bool = True,
    user_col: str = C.USER_KEY,
    bucket_col: str = C.USER_BUCKET,
    item_col: str = C.ITEM_ID,
    idx_col: str = C.ITEM_IDX,
    type_col: str = C.EVENT_TYPE,
    time_col: str = C.EVENT_TIME,
    event_id_col: str = C.EVENT_ID,
    purchase_type: str = C.PURCHASE,
    seq_col: str = C.ITEM_SEQ,
    purchased_col: str = C.PURCHASED_ITEMS,
) -> DataFrame:
    """Per user: chronological ``item_seq`` (array<int> of item_idx), ``purchased_items`` and bucket.

    Only events of ``event_types`` with an item in ``vocab`` count. With ``collapse_repeats``,
    consecutive events on the same item become one. The most recent ``max_seq_len + 2`` items are kept
    (the trainer holds out the last two: test, and the one before: validation); users with fewer than
    ``min_seq_len`` items (after collapsing) are dropped. ``purchased_items`` is the sorted distinct
    item_idx of the user's purchases in the window (any purchase, whatever ``event_types`` holds).
    """
    if max_seq_len < 1 or min_seq_len < 1:
        raise ValueError(f"max_seq_len={max_seq_len}, min_seq_len={min_seq_len}: both must be >= 1")
    indexed = events.filter(F.col(item_col).isNotNull()).join(
        F.broadcast(vocab.select(item_col, F.col(idx_col).cast("int").alias(idx_col))), item_col, "inner"
    )
    # One shuffle by user: the ordered sequence and the purchases come out of the same aggregation;
    # repeats are collapsed on the sorted array (no window, so no second sort of the events).
    in_sequence = F.col(type_col).isin(list(event_types))
    ordered = F.sort_array(F.collect_list(F.when(in_sequence, F.struct(time_col, event_id_col, idx_col))))
    bought = F.array_sort(F.collect_set(F.when(F.col(type_col) == purchase_type, F.col(idx_col))))
    per_user = indexed.groupBy(user_col, bucket_col).agg(
        F.transform(ordered, lambda s: s[idx_col]).alias("_all"), bought.alias(purchased_col))
    items = F.col("_all")
    if collapse_repeats:
        items = F.filter("_all", lambda x, i: (i == 0) | (x != F.col("_all")[i - 1]))
    keep = max_seq_len + 2
    return (
        per_user.withColumn("_all", items)
        .filter(F.size("_all") >= min_seq_len)
        .select(user_col, bucket_col,
                F.slice("_all", F.greatest(F.size("_all") - keep + 1, F.lit(1)), F.lit(keep)).alias(seq_col),
                purchased_col)
    )


def add_padded_sequence(sequences: DataFrame, width: int, seq_col: str = C.ITEM_SEQ,
                        padded_col: str = ITEM_SEQ_PADDED, length_col: str = SEQ_LEN) -> DataFrame:
    """Add ``item_seq_padded``: the last ``width`` items left-padded with 0 to exactly ``width``, and ``seq_len``.

    A fixed-length int array column reads straight into an int32[n, width] matrix (one reshape of the
    Arrow values), so the trainer needs no per-row Python work.
    """
    if width < 1:
        raise ValueError(f"width={width}: must be >= 1")
    tail = F.slice(seq_col, F.greatest(F.size(seq_col) - width + 1, F.lit(1)), width)
    padding = F.array_repeat(F.lit(0), F.lit(width) - F.size(tail))
    return sequences.withColumn(padded_col, F.concat(padding, tail).cast("array<int>")).withColumn(
        length_col, F.size(seq_col))
