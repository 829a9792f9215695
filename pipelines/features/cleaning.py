"""Which events count: late ones, replays, duplicates and bots (pure ``DataFrame -> DataFrame`` steps).

The rules, in the order the job applies them to the validated events of the days it computes:

1. **Late events.** An event belongs to the partition it *landed* in (``landed_dt``) but keeps its own
   ``event_time``. One whose UTC day is up to ``late_event_days`` before ``landed_dt`` is *late* and kept:
   it takes its true place in time in tonight's sequences and aggregates; earlier nights' outputs are not
   rewritten. Older ones, and events dated after the day they landed in, are dropped and counted
   (validation already quarantines them; the job does not rely on it).
2. **Replays.** An event whose ``event_id`` was landed on one of the ``late_event_days`` days before is a
   replay and is dropped (a replay can only be that late, by rule 1, so those days suffice).
3. **Duplicates.** Of rows sharing an ``event_id`` the earliest landed, then earliest, is kept; the
   order is total (every column breaks ties), so reruns keep the same row.
4. **Bots.** A session (see ``transforms.build_sessions``) with at least ``bot_min_events`` events and
   more than ``max_events_per_minute`` events per minute of its duration (at least one minute) is
   bot-like: its events are flagged ``is_bot`` and excluded from every feature and aggregate.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines import columns as C

LANDED_DT = "landed_dt"  # the raw partition (YYYY-MM-DD) an event landed in
IS_BOT = "is_bot"
LATENESS_DAYS = "_lateness_days"
# Bot sessions are joined back by broadcast while there are at most this many (else by a shuffle).
_BROADCAST_BOT_SESSIONS = 200_000


def lateness_days(time_col: str = C.EVENT_TIME, landed_col: str = LANDED_DT) -> Column:
    """Days between the event's UTC day and the day it landed (0 on time, > 0 late, < 0 from the future)."""
    return F.datediff(F.to_date(F.col(landed_col)), F.to_date(F.col(time_col)))


def keep_allowed_lateness(df: DataFrame, late_event_days: int, time_col: str = C.EVENT_TIME,
                          landed_col: str = LANDED_DT) -> DataFrame:
    """Rows landed at most ``late_event_days`` after their event day, and not before it (rule 1)."""
    if late_event_days < 0:
        raise ValueError(f"late_event_days={late_event_days}: must be >= 0")
    return df.filter(lateness_days(time_col, landed_col).between(0, late_event_days))


def drop_replayed_events(df: DataFrame, earlier_ids: DataFrame | None, event_id_col: str = C.EVENT_ID) -> DataFrame:
    """Rows whose event_id is not among ``earlier_ids`` (the ids landed on earlier days; rule 2)."""
    if earlier_ids is None:
        return df
    return df.join(earlier_ids.select(event_id_col).distinct(), event_id_col, "left_anti")


def drop_duplicate_events(df: DataFrame, event_id_col: str = C.EVENT_ID, time_col: str = C.EVENT_TIME,
                          landed_col: str = LANDED_DT) -> DataFrame:
    """One row per event_id: earliest landed, then earliest time, then every other column (rule 3)."""
    first = [c for c in (landed_col, time_col) if c in df.columns]
    rest = [F.col(c).asc_nulls_last() for c in sorted(df.columns) if c not in (event_id_col, *first)]
    order = Window.partitionBy(event_id_col).orderBy(*[F.col(c).asc_nulls_last() for c in first], *rest)
    return df.withColumn("_rn", F.row_number().over(order)).filter(F.col("_rn") == 1).drop("_rn")


def session_activity(sessions: DataFrame, user_col: str = C.USER_KEY, time_col: str = C.EVENT_TIME,
                     session_col: str = C.SESSION_KEY) -> DataFrame:
    """One row per session: events, start, and duration in minutes (at least 1)."""
    micros = F.unix_micros(F.col(time_col))
    return sessions.groupBy(user_col, session_col).agg(
        F.count(F.lit(1)).alias("events"),
        F.min(time_col).alias("start"),
        F.greatest((F.max(micros) - F.min(micros)) / 60e6, F.lit(1.0)).alias("minutes"),
    )


def is_bot_session(max_events_per_minute: float, min_events: int) -> Column:
    """True on the rows of ``session_activity`` that are bot-like sessions (rule 4)."""
    if max_events_per_minute <= 0 or min_events < 1:
        raise ValueError(f"max_events_per_minute={max_events_per_minute} must be > 0 and min_events="
                         f"{min_events} >= 1")
    rate = F.col("events") / F.col("minutes")
    return (F.col("events") >= min_events) & (rate > max_events_per_minute)


def bot_sessions(activity: DataFrame, max_events_per_minute: float, min_events: int,
                 session_col: str = C.SESSION_KEY) -> DataFrame:
    """Session keys (and their event counts) of the bot-like sessions of ``session_activity`` (rule 4)."""
    return activity.filter(is_bot_session(max_events_per_minute, min_events)).select(session_col, "events")


def flag_bots(sessions: DataFrame, bots: DataFrame, n_bot_sessions: int,
              session_col: str = C.SESSION_KEY, flag_col: str = IS_BOT) -> DataFrame:
    """``sessions`` with ``is_bot`` true on the events of ``bots``' sessions, false elsewhere."""
    keys = bots.select(session_col, F.lit(True).alias(flag_col))
    if n_bot_sessions <= _BROADCAST_BOT_SESSIONS:
        keys = F.broadcast(keys)
    return sessions.join(keys, session_col, "left").withColumn(flag_col, F.coalesce(flag_col, F.lit(False)))
