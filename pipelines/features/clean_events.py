"""The incremental part of the feature job: each landed day's *clean events*, computed once and kept.

A night computes the clean events of the day that landed (``ds``) and writes them to
``features/dt=<ds>/events/``: validated rows with the late-event, replay, duplicate and bot rules of
``cleaning`` applied, users pseudonymised and sessions built. The window's aggregates then read the
clean events of the earlier days from their own nights instead of redoing that work, so a night costs
the new day plus reading what the window needs. A day whose clean events are missing, or were written
with other settings (``signature``: rules, bucket count, hash key), is recomputed in the same batch.

Functions take the Spark session; none creates one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.dates import shift
from pipelines.features import cleaning, transforms
from pipelines.features.cleaning import IS_BOT, LANDED_DT

EVENTS_DIR = lake.CLEAN_EVENTS
READ_COLUMNS = (C.EVENT_ID, C.EVENT_TIME, C.USER_ID, C.EVENT_TYPE, C.ITEM_ID, C.CATEGORY, C.PRICE, C.CAMPAIGN)
CLEAN_COLUMNS = (C.EVENT_ID, C.EVENT_TIME, C.USER_KEY, C.USER_BUCKET, C.SESSION_KEY, C.EVENT_TYPE, C.ITEM_ID,
                 C.CATEGORY, C.PRICE, C.CAMPAIGN, LANDED_DT, IS_BOT)
# Duplicate-id candidates up to this many are broadcast, so the events are not shuffled by id.
_BROADCAST_ROWS = 2_000_000
_SESSION_START = "_session_start"  # epoch micros, while the sessions are keyed by the raw user id
_FORMAT_VERSION = 1  # bump when the clean events' columns or rules change: old days are then recomputed


@dataclass(frozen=True)
class CleanParams:
    late_event_days: int
    session_gap_minutes: int
    user_buckets: int
    bot_max_events_per_minute: float
    bot_min_events: int

    def signature(self, key: bytes) -> str:
        """Changes when anything that shapes clean events changes; reveals nothing about the key."""
        fingerprint = hmac.new(key, b"clean-events-signature", hashlib.sha256).hexdigest()
        payload = json.dumps({**asdict(self), "key": fingerprint, "version": _FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CleanBatch:
    events: DataFrame  # CLEAN_COLUMNS of the batch's landed days, bots flagged, not filtered
    cached: tuple[DataFrame, ...]  # the persisted frames ``events`` derives from; unpersist when done
    # events_in = late_events_dropped + future_events_dropped + duplicates_dropped + events_after_dedup;
    # late_events_kept counts rows within the allowance (a replay among them is then a duplicate)
    counts: dict


def plan_days(validated_root: Path, features_root: Path, ds: str, window_days: int, signature: str
              ) -> tuple[list[Path], dict[str, Path]]:
    """(validated partitions to compute, {day: clean events folder to reuse}) for the window ending at ds."""
    compute, reuse = [], {}
    for folder in lake.window_partitions(validated_root, ds, window_days):
        day = lake.day_of(folder)
        stored = Path(features_root) / folder.name
        if day != ds and _signature_of(stored) == signature and fs.is_dir(stored / EVENTS_DIR):
            reuse[day] = stored / EVENTS_DIR
        else:
            compute.append(folder)
    return compute, reuse


def _signature_of(features_partition: Path) -> str | None:
    try:
        return fs.read_json(fs.join(features_partition, lake.FEATURE_STATS)).get("clean_signature")
    except (FileNotFoundError, ValueError):
        return None


def read_validated(spark: SparkSession, folders: list[Path]) -> DataFrame:
    """READ_COLUMNS + landed_dt of the validated day folders (one scan, columns pruned)."""
    root = folders[0].parent
    raw = spark.read.option("basePath", str(root)).parquet(*[str(f) for f in folders])
    missing = [c for c in READ_COLUMNS if c not in raw.columns]
    if missing or dict(raw.dtypes).get(C.EVENT_TIME) != "timestamp":
        raise SystemExit(f"build_features: validated partitions {[f.name for f in folders]} under {root}: missing "
                         f"columns {missing} or {C.EVENT_TIME} not a timestamp; rerun validation for those days")
    return raw.select(*READ_COLUMNS, F.date_format(F.col("dt"), "yyyy-MM-dd").alias(LANDED_DT))


def earlier_event_ids(spark: SparkSession, validated_root: Path, folders: list[Path], late_event_days: int
                      ) -> DataFrame | None:
    """(event_id, landed_dt) of the validated days a replay in ``folders`` could repeat; None if there are none."""
    days = [lake.day_of(f) for f in folders]
    first, last = shift(min(days), -late_event_days), shift(max(days), -1)
    wanted = [f for f in lake.partitions_between(validated_root, first, last)
              if lake.day_of(f) not in days]
    if not wanted or late_event_days == 0:
        return None
    ids = spark.read.option("basePath", str(validated_root)).parquet(*[str(f) for f in wanted])
    return ids.select(C.EVENT_ID, F.date_format(F.col("dt"), "yyyy-MM-dd").alias("_earlier_dt"))


def drop_replays(df: DataFrame, earlier: DataFrame | None, late_event_days: int) -> DataFrame:
    """Rows whose id landed on one of the ``late_event_days`` days before their own landing day."""
    if earlier is None:
        return df
    same = (df[C.EVENT_ID] == earlier[C.EVENT_ID]) & (earlier["_earlier_dt"] < df[LANDED_DT]) & (
        F.to_date(earlier["_earlier_dt"]) >= F.date_sub(F.to_date(df[LANDED_DT]), late_event_days))
    return df.join(earlier, same, "left_anti")


def drop_duplicates(df: DataFrame) -> tuple[DataFrame, list[DataFrame]]:
    """``cleaning.drop_duplicate_events`` applied only to the rows whose id may occur more than once.

    Duplicates are rare, so the candidates are found by a shuffle of a 64-bit hash of the id alone
    (``xxhash64``; cheaper to shuffle and group than the id string), and only the candidates' rows are
    deduplicated by the id itself: a hash collision adds candidates, never drops a row, so the result is
    exact. The other rows pass untouched (no shuffle and sort of every row by id). Returns the frame
    and what it cached.
    """
    id_hash = F.xxhash64(C.EVENT_ID).alias("_id_hash")
    candidates = df.groupBy(id_hash).count().filter(F.col("count") > 1).select("_id_hash").persist()
    with described(df.sparkSession, "duplicates: ids seen twice; input counts"):
        n_candidates = candidates.count()
    if n_candidates == 0:
        return df, [candidates]
    if n_candidates > _BROADCAST_ROWS:
        return cleaning.drop_duplicate_events(df), [candidates]
    flagged = F.broadcast(candidates.withColumn("_dup", F.lit(True)))
    marked = df.withColumn("_id_hash", F.xxhash64(C.EVENT_ID)).join(flagged, "_id_hash", "left")
    single = marked.filter(F.col("_dup").isNull()).drop("_dup", "_id_hash")
    copies = cleaning.drop_duplicate_events(marked.filter(F.col("_dup")).drop("_dup", "_id_hash"))
    return single.unionByName(copies), [candidates]


@contextmanager
def described(spark: SparkSession, what: str):
    """Name the Spark jobs started inside (the Spark UI, the event log and ``make bench-features`` show it)."""
    spark.sparkContext.setJobDescription(what)
    try:
        yield
    finally:
        spark.sparkContext.setJobDescription(None)


def clean_batch(raw: DataFrame, earlier: DataFrame | None, key: bytes, params: CleanParams,
                hash_users_once_up_to: int = 0) -> CleanBatch:
    """Apply the rules of ``cleaning`` to validated rows (with landed_dt); see the module doc.

    The input counts are observed while the duplicate ids are found (``Observation``: no pass of
    their own). Sessions are built and users pseudonymised by ``sessionise`` (two SHA-256 per row by
    default; each distinct user once with ``hash_users_once_up_to``).
    """
    validated = raw
    lateness = cleaning.lateness_days()
    observed = Observation("validated rows")
    raw = raw.observe(
        observed,
        F.count(F.lit(1)).alias("events_in"),
        F.sum((lateness > params.late_event_days).cast("long")).alias("late_events_dropped"),
        F.sum((lateness < 0).cast("long")).alias("future_events_dropped"),
        F.sum(lateness.between(1, params.late_event_days).cast("long")).alias("late_events_kept"),
    )
    kept = drop_replays(cleaning.keep_allowed_lateness(raw, params.late_event_days), earlier,
                        params.late_event_days)
    kept, cached = drop_duplicates(kept)
    counts = {k: int(v or 0) for k, v in observed.get.items()}
    sessions, hashed = sessionise(kept, validated, key, params, hash_users_once_up_to)
    sessions = sessions.persist()
    activity = cleaning.session_activity(sessions)
    is_bot = cleaning.is_bot_session(params.bot_max_events_per_minute, params.bot_min_events)
    with described(raw.sparkSession, "sessions: pseudonymise, sessionise, cache; count sessions and bots"):
        totals = activity.agg(F.count(F.lit(1)).alias("sessions"), F.sum("events").alias("events"),
                              F.count(F.when(is_bot, 1)).alias("bots"),
                              F.sum(F.when(is_bot, F.col("events"))).alias("bot_events")).first()
    n_bots = int(totals["bots"])
    # Cached on first use (the events' write); the totals above counted them from the same rule.
    bots = cleaning.bot_sessions(activity, params.bot_max_events_per_minute, params.bot_min_events).persist()
    events = cleaning.flag_bots(sessions, bots, n_bots) if n_bots else sessions.withColumn(IS_BOT, F.lit(False))
    after_rules = counts["events_in"] - counts["late_events_dropped"] - counts["future_events_dropped"]
    counts.update({
        "events_after_dedup": int(totals["events"] or 0),
        "duplicates_dropped": after_rules - int(totals["events"] or 0),
        "sessions_in_batch": int(totals["sessions"]),
        "bot_sessions": n_bots,
        "bot_events_excluded": int(totals["bot_events"] or 0),
    })
    return CleanBatch(events=events.select(*CLEAN_COLUMNS), cached=(sessions, bots, *cached, *hashed),
                      counts=counts)


def sessionise(kept: DataFrame, validated: DataFrame, key: bytes, params: CleanParams, once_up_to: int
               ) -> tuple[DataFrame, list[DataFrame]]:
    """``kept`` pseudonymised (``user_key``, ``user_bucket``) with its ``session_key``; and what was cached.

    Up to ``once_up_to`` distinct users (in ``validated``, the batch's rows before any rule), the
    sessions are built on the raw ``user_id`` (a short key to shuffle and sort by), then each user is
    hashed once and the keys broadcast to a join: the session key is the same ``<user_key>:<start>``.
    Above it (or with 0) every row is hashed first and the sessions built on ``user_key``, which needs
    no broadcast. ``make bench-features BENCH_ARGS=--hash-once-too`` measures both side by side; the
    broadcast join and the extra pass over the ids measured slower than the SHA-256 they save (README,
    "Sizing"), so the default (``features.hash_users_once_up_to: 0``) hashes every row.
    """
    gap = params.session_gap_minutes
    if once_up_to > 0:
        ids = validated.select(C.USER_ID).distinct().persist()
        with described(kept.sparkSession, "users: distinct ids to hash once"):
            n_users = ids.count()
        if n_users <= once_up_to:
            by_raw_id = transforms.build_sessions(kept, gap, user_col=C.USER_ID, split_col=LANDED_DT,
                                                  session_col=None, start_col=_SESSION_START)
            keyed = transforms.pseudonymize_each_user_once(by_raw_id, ids, key, params.user_buckets)
            session = transforms.session_key(F.col(C.USER_KEY), F.col(_SESSION_START))
            return keyed.withColumn(C.SESSION_KEY, session).drop(_SESSION_START), [ids]
        ids.unpersist()
    users = transforms.pseudonymize_users(kept, key, params.user_buckets)
    return transforms.build_sessions(users, gap, split_col=LANDED_DT), []


def read_clean_events(spark: SparkSession, folders: dict[str, Path]) -> DataFrame | None:
    """The stored clean events of earlier nights (CLEAN_COLUMNS), or None when there are none."""
    if not folders:
        return None
    return spark.read.parquet(*[str(f) for f in folders.values()]).select(*CLEAN_COLUMNS)
