"""The feature job's core in DuckDB SQL, on the same validated files: the single-node baseline.

Same rules as ``spark_jobs/build_features.py --outputs core`` (see ``pipelines.features.cleaning``):
allowed lateness, dedup by event_id (earliest landed, then earliest time), HMAC-SHA256 user keys and
buckets, sessions by inactivity gap within a landed day, bot sessions excluded, the item vocabulary
by first sighting, per-user sequences (repeats collapsed, last max_seq_len + 2 kept, left-padded
copy), purchases, and item popularity over several windows. Writes Parquet like the job does, so
``run`` can compare the two outputs row for row. DuckDB is a development dependency only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines.features.transforms import _hmac_pads

SEQUENCE_TYPES = ("product_view", "add_to_cart", "purchase")


def _sql(validated: Path, ds: str, key: bytes, window_days: int, late_days: int, gap_minutes: int,
         buckets: int, bot_rate: float, bot_min: int, max_seq_len: int, min_seq_len: int) -> dict[str, str]:
    inner, outer = _hmac_pads(key)
    start = (dt.date.fromisoformat(ds) - dt.timedelta(days=window_days - 1)).isoformat()
    end = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    types = ", ".join(f"'{t}'" for t in SEQUENCE_TYPES)
    keep = max_seq_len + 2
    return {
        "raw": f"""CREATE TEMP TABLE raw AS SELECT event_id, event_time, user_id, event_type, item_id, category,
            price, campaign, CAST(dt AS VARCHAR) AS landed_dt
          FROM read_parquet('{validated}/dt=*/*.parquet', hive_partitioning = true, hive_types = {{'dt': VARCHAR}})
          WHERE dt BETWEEN '{start}' AND '{ds}'""",
        "kept": f"""CREATE TEMP TABLE kept AS SELECT * FROM raw
          WHERE date_diff('day', CAST(event_time AS DATE), CAST(landed_dt AS DATE)) BETWEEN 0 AND {late_days}
          QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY landed_dt, event_time, campaign NULLS LAST,
            category NULLS LAST, event_type, item_id NULLS LAST, price NULLS LAST, user_id) = 1""",
        "users": f"""CREATE TEMP TABLE users AS SELECT user_id, user_key,
            CAST(CAST(('0x' || substr(user_key, 1, 15)) AS BIGINT) % {buckets} AS INTEGER) AS user_bucket
          FROM (SELECT user_id, sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || encode(user_id))))
                AS user_key FROM (SELECT DISTINCT user_id FROM kept))""",
        "sessions": f"""CREATE TEMP TABLE sessions AS SELECT *, user_key || ':' || CAST(max(CASE WHEN is_new THEN micros END)
            OVER (PARTITION BY user_key ORDER BY landed_dt, event_time, event_id ROWS UNBOUNDED PRECEDING) AS VARCHAR)
            AS session_key
          FROM (SELECT k.* EXCLUDE (user_id), u.user_key, u.user_bucket, epoch_us(k.event_time) AS micros,
              coalesce(epoch_us(k.event_time) - lag(epoch_us(k.event_time)) OVER w > {gap_minutes * 60_000_000}
                       OR lag(k.landed_dt) OVER w <> k.landed_dt, true) AS is_new
            FROM kept k JOIN users u USING (user_id)
            WINDOW w AS (PARTITION BY u.user_key ORDER BY k.landed_dt, k.event_time, k.event_id))""",
        "bots": f"""CREATE TEMP TABLE bots AS SELECT session_key FROM sessions GROUP BY session_key
          HAVING count(*) >= {bot_min}
             AND count(*) / greatest((max(micros) - min(micros)) / 60e6, 1.0) > {bot_rate}""",
        "events": f"""CREATE TEMP TABLE events AS SELECT * FROM sessions
          WHERE session_key NOT IN (SELECT session_key FROM bots) AND event_time >= TIMESTAMPTZ '{start}'""",
        "vocab": f"""CREATE TEMP TABLE vocab AS SELECT item_id,
            CAST(row_number() OVER (ORDER BY first_time, item_id) AS INTEGER) AS item_idx, category
          FROM (SELECT item_id, event_time AS first_time, category FROM events
                WHERE item_id IS NOT NULL AND event_time < TIMESTAMPTZ '{end}'
                QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY event_time, event_id) = 1)""",
        "sequences": f"""CREATE TEMP TABLE sequences AS
          WITH per_user AS (
            SELECT user_key, user_bucket,
              list(item_idx ORDER BY event_time, event_id) FILTER (WHERE event_type IN ({types})) AS items,
              list_sort(list_distinct(list(item_idx) FILTER (WHERE event_type = 'purchase'))) AS bought
            FROM events JOIN vocab USING (item_id) GROUP BY user_key, user_bucket),
          collapsed AS (
            SELECT user_key, user_bucket, bought,
              list_filter(items, lambda x, i: i = 1 OR x <> items[i - 1]) AS items FROM per_user)
          SELECT user_key, user_bucket,
            CAST(items[greatest(len(items) - {keep} + 1, 1):] AS INTEGER[]) AS item_seq,
            CAST(coalesce(bought, []) AS INTEGER[]) AS purchased_items
          FROM collapsed WHERE len(items) >= {min_seq_len}""",
    }


def popularity_sql(ds: str, windows: list[int]) -> str:
    starts = {w: (dt.date.fromisoformat(ds) - dt.timedelta(days=w - 1)).isoformat() for w in windows}
    per_user = ", ".join(f"sum(CAST(event_time >= TIMESTAMPTZ '{s}' AS BIGINT)) AS e{w}" for w, s in starts.items())
    stacked = " UNION ALL ".join(
        f"SELECT {w} AS window_days, item_idx, sum(e{w}) AS n_events, count(*) FILTER (WHERE e{w} > 0) AS n_users "
        f"FROM per_user GROUP BY item_idx HAVING sum(e{w}) > 0" for w in windows)
    return f"""CREATE TEMP TABLE popularity AS
      WITH per_user AS (SELECT item_idx, user_key, {per_user} FROM events JOIN vocab USING (item_id)
                        GROUP BY item_idx, user_key)
      SELECT window_days, row_number() OVER (PARTITION BY window_days ORDER BY n_events DESC, item_idx) AS rank,
        item_idx, n_events, n_users FROM ({stacked})"""


def build_core_features(validated: Path, out: Path, ds: str, key: bytes, window_days: int = 90,
                        late_days: int = 1, gap_minutes: int = 30, buckets: int = 100_000, bot_rate: float = 30.0,
                        bot_min: int = 10, max_seq_len: int = 50, min_seq_len: int = 3,
                        windows: tuple[int, ...] = (1, 7, 30), threads: int = 2, memory_limit: str = "4GB") -> dict:
    """Run the core features; write out/<table>.parquet; return the counts the job's stats also hold."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}; SET TimeZone = 'UTC'; SET preserve_insertion_order = false; SET enable_progress_bar = false; SET memory_limit = '{memory_limit}'")
    statements = _sql(Path(validated), ds, key, window_days, late_days, gap_minutes, buckets, bot_rate, bot_min,
                      max_seq_len, min_seq_len)
    for sql in [*statements.values(), popularity_sql(ds, list(windows))]:
        con.execute(sql)
    for table in ("sequences", "popularity", "vocab"):
        con.execute(f"COPY {table} TO '{out / table}.parquet' (FORMAT parquet)")
    con.execute(f"COPY (SELECT * EXCLUDE (micros, is_new) FROM sessions WHERE landed_dt = '{ds}') "
                f"TO '{out / 'events'}.parquet' (FORMAT parquet)")
    counts = con.execute("""SELECT (SELECT count(*) FROM raw), (SELECT count(*) FROM sessions),
        (SELECT count(*) FROM bots), (SELECT count(*) FROM events), (SELECT count(DISTINCT session_key) FROM events),
        (SELECT count(*) FROM sequences), (SELECT count(*) FROM vocab)""").fetchone()
    con.close()
    names = ("events_in", "events_after_dedup", "bot_sessions", "events_in_window", "sessions",
             "users_with_sequences", "items")
    return dict(zip(names, (int(c) for c in counts), strict=True))


if __name__ == "__main__":  # python -m benchmarks.features.duckdb_features VALIDATED OUT DS WINDOW_DAYS (key in the env)
    import json
    import os
    import sys

    validated, out, ds, window = sys.argv[1:5]
    key = os.environ["PIPELINE_USER_HASH_KEY"].encode()
    print(json.dumps(build_core_features(Path(validated), Path(out), ds, key, window_days=int(window))))
