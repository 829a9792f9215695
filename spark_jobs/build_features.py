"""Nightly feature job: validated events -> clean events of the day, then the window's features.

    spark-submit --master 'local[*]' spark_jobs/build_features.py --ds 2026-11-27 \\
        --validated-root var/lake/raw/validated --features-root var/lake/features

Incremental: the day that landed (``ds``) is cleaned once (late events, replays, duplicates, bots,
pseudonymised users, sessions; see ``pipelines.features.cleaning``) and kept as ``events/``; the
earlier days of the trailing window are read from their own nights' ``events/`` (recomputed only when
missing or written with other settings). From the window's clean, non-bot events it writes
``features_root/dt=<ds>/`` whole through a staging folder and one rename:

- ``sequences/`` (user_key, user_bucket, item_seq, purchased_items, item_seq_padded, seq_len)
- ``item_vocab/`` (append-only ids, versioned with the features: the previous one is the latest before ds)
- ``item_popularity/`` (whole window) and ``item_popularity_windows/`` (1/7/30 days)
- ``user_rfm/`` (recency, frequency, monetary, favourite categories), ``campaign_performance/``,
  ``campaign_items/`` (the items each campaign's ads showed: scoring builds its audience from them)
- ``sessions_summary/``, ``events/`` and ``_stats.json`` (counts that reconcile, and the settings)

A rerun of the same ds replaces the folder with identical content. ``--outputs core`` writes only
events, vocabulary, sequences and popularity (what the benchmark compares with DuckDB).

spark-submit runs this file directly, so the repository root is put on ``sys.path`` when
``pipelines`` is not installed; the executors need nothing from the repo (no Python UDFs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

try:
    import pipelines  # noqa: F401
except ImportError:  # run as a file by spark-submit with a Python that lacks the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from pipelines import columns as C  # noqa: E402
from pipelines.features import clean_events, partitions, transforms, vocab, window_outputs  # noqa: E402
from pipelines.features.cleaning import IS_BOT, LANDED_DT  # noqa: E402
from pipelines.io import partition_path, publish_partition, staging_path_for, write_json_atomic  # noqa: E402

VOCAB_DIR, SEQUENCES_DIR, EVENTS_DIR = "item_vocab", "sequences", clean_events.EVENTS_DIR
VOLUME_ALERT_FACTOR = 10  # a day with this many times the window's median volume is flagged in the stats
# The HMAC pads are 64-byte literals (128 hex digits) in the plan: keep them out of logs and the UI.
_REDACT_KEY_PADS = "(?i)[0-9a-f]{128}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value}: must be > 0")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated days, e.g. 1,7,30") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive days, e.g. 1,7,30")
    return values


def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date YYYY-MM-DD") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--ds", type=_iso_date, required=True, help="logical date YYYY-MM-DD (window end)")
    add("--validated-root", type=Path, required=True, help="folder of validated dt=* folders")
    add("--features-root", type=Path, required=True, help="folder the dt=<ds> output goes to")
    add("--window-days", type=_positive_int, default=90, help="trailing days read (default 90)")
    add("--session-gap-minutes", type=_positive_int, default=30, help="inactivity that splits sessions")
    add("--max-seq-len", type=_positive_int, default=50, help="items kept per user, plus 2 held out")
    add("--min-seq-len", type=_positive_int, default=3, help="users with fewer items are dropped")
    add("--user-buckets", type=_positive_int, default=100_000, help="number of user buckets")
    add("--sequence-event-types", default=",".join(transforms.DEFAULT_SEQUENCE_EVENT_TYPES),
        help=f"comma list of events forming sequences; allowed: {','.join(C.ITEM_EVENT_TYPES)}")
    add("--hash-key-env", default="PIPELINE_USER_HASH_KEY", help="env variable with the HMAC key")
    add("--shuffle-partitions", type=_positive_int, default=8, help="spark.sql.shuffle.partitions")
    add("--late-event-days", type=_non_negative_int, default=1, help="days an event may land after its day")
    add("--bot-max-events-per-minute", type=_positive_float, default=30.0, help="faster sessions are bots")
    add("--bot-min-events", type=_positive_int, default=10, help="sessions shorter than this are never bots")
    add("--popularity-windows", type=_int_list, default=[1, 7, 30], help="days, e.g. 1,7,30")
    add("--favourite-categories", type=_positive_int, default=3, help="top categories kept per user")
    add("--outputs", choices=["all", "core"], default="all", help="core: events, vocab, sequences, popularity")
    args = parser.parse_args(argv)
    args.sequence_event_types = [t.strip() for t in args.sequence_event_types.split(",") if t.strip()]
    unknown = sorted(set(args.sequence_event_types) - set(C.ITEM_EVENT_TYPES))
    if unknown or not args.sequence_event_types:
        parser.error(f"--sequence-event-types: {unknown or 'empty'} not allowed; choose from {list(C.ITEM_EVENT_TYPES)}")
    if args.min_seq_len > args.max_seq_len + 2:
        parser.error(f"--min-seq-len {args.min_seq_len} exceeds --max-seq-len + 2 = {args.max_seq_len + 2}")
    return args


def _hash_key(env_name: str) -> bytes:
    key = os.environ.get(env_name, "")
    if not key:
        raise SystemExit(
            f"build_features: environment variable {env_name} is not set or empty; it must hold the secret "
            f"key that pseudonymizes user ids. Set it (from the secrets backend, never a committed file) "
            f"or name another variable with --hash-key-env."
        )
    return key.encode("utf-8")


def _check_today(args: argparse.Namespace) -> None:
    today = partition_path(args.validated_root, args.ds)
    if not today.is_dir():
        raise SystemExit(
            f"build_features: {today} does not exist: there are no validated events for ds={args.ds}. "
            f"Run the validation task for {args.ds} first, then rerun this job."
        )


def _clean_params(args: argparse.Namespace) -> clean_events.CleanParams:
    return clean_events.CleanParams(
        late_event_days=args.late_event_days, session_gap_minutes=args.session_gap_minutes,
        user_buckets=args.user_buckets, bot_max_events_per_minute=args.bot_max_events_per_minute,
        bot_min_events=args.bot_min_events)


def _write(df, path: Path) -> None:
    # One small file per output; repartition (not coalesce) keeps the upstream stages parallel.
    with clean_events.described(df.sparkSession, f"write {path.name}"):
        df.repartition(1).write.mode("errorifexists").parquet(str(path))


def _window_events(spark, args, key: bytes, staging: Path, stats: dict):
    """Clean the days that need it, store today's; the window's clean non-bot events and what to unpersist."""
    params = _clean_params(args)
    stats["clean_signature"] = signature = params.signature(key)
    compute, reuse = clean_events.plan_days(args.validated_root, args.features_root, args.ds, args.window_days,
                                            signature)
    raw = clean_events.read_validated(spark, compute)
    earlier = clean_events.earlier_event_ids(spark, args.validated_root, compute, args.late_event_days)
    batch = clean_events.clean_batch(raw, earlier, key, params)
    today = batch.events.filter(F.col(LANDED_DT) == args.ds)
    # The sessions' own order (user, landed day, time, id): rows come out of that window so, no second sort.
    with clean_events.described(spark, f"write {EVENTS_DIR} of {args.ds}"):
        today.sortWithinPartitions(C.USER_KEY, LANDED_DT, C.EVENT_TIME, C.EVENT_ID).write.parquet(
            str(staging / EVENTS_DIR))
    stored = clean_events.read_clean_events(spark, reuse)
    events = batch.events if stored is None else batch.events.unionByName(stored)
    start, _ = partitions.window_bounds(args.ds, args.window_days)
    window = events.filter(~F.col(IS_BOT) & (F.col(C.EVENT_TIME) >= F.to_timestamp(F.lit(start))))
    if stored is not None:  # else it derives cheaply from the batch's cached sessions: no second cache
        window = window.persist()
    stats.update(batch.counts)
    with clean_events.described(spark, "count the window's events"):
        stats.update({"partitions_read": [p.name for p in compute], "clean_events_reused": sorted(reuse),
                      "events_in_window": window.count()})
    return window, [window, *batch.cached]


def _volume(args: argparse.Namespace, events_today: int) -> dict:
    """Today's landed volume against the median of the window's other days (from validation's counts)."""
    import json
    import statistics

    others = []
    for folder in partitions.window_partitions(args.validated_root, args.ds, args.window_days):
        counts = folder / "_counts.json"
        if folder.name != f"dt={args.ds}" and counts.exists():
            others.append(json.loads(counts.read_text()).get("rows_accepted", 0))
    median = statistics.median(others) if others else None
    ratio = round(events_today / median, 2) if median else None
    alert = ratio is not None and ratio >= VOLUME_ALERT_FACTOR
    if alert:
        print(f"build_features: WARNING dt={args.ds} has {ratio}x the median daily volume ({median}); "
              f"check the collector for replays or a bot before trusting tonight's features")
    return {"events_landed_today": events_today, "median_daily_events": median, "volume_ratio": ratio,
            "volume_alert": alert}


def _build(spark, args, key: bytes, staging: Path) -> dict:
    stats: dict = {}
    events, cached = _window_events(spark, args, key, staging, stats)
    previous_dir = partitions.latest_partition_before(args.features_root, args.ds, VOCAB_DIR)
    previous = spark.read.parquet(str(previous_dir / VOCAB_DIR)) if previous_dir else None
    try:
        _write(vocab.update_item_vocab(previous, events, args.ds).orderBy(C.ITEM_IDX), staging / VOCAB_DIR)
        item_vocab = spark.read.parquet(str(staging / VOCAB_DIR))
        outputs = window_outputs.build_outputs(events, item_vocab, args)
        for name, frame in outputs.items():
            _write(frame, staging / name)
        with clean_events.described(spark, "count sessions and users"):
            totals = window_outputs.window_totals(events)
    finally:
        for frame in cached:
            frame.unpersist()
    items = item_vocab.count()
    start, end = partitions.window_bounds(args.ds, args.window_days)
    events_today = spark.read.parquet(str(staging / EVENTS_DIR)).count()
    return {
        "ds": args.ds, "window_start": start, "window_end": end, "window_days": args.window_days, **stats,
        **totals, **_volume(args, events_today),
        "previous_vocab": previous_dir.name if previous_dir else None,
        "users_with_sequences": spark.read.parquet(str(staging / SEQUENCES_DIR)).count(),
        "items": items,
        "new_items": items - (previous.count() if previous is not None else 0),
        "items_without_category": item_vocab.filter(F.col(C.CATEGORY).isNull()).count(),
        "vocab_version": args.ds,
        "outputs": sorted(["_stats.json", EVENTS_DIR, VOCAB_DIR, *outputs]),
        "personal_data_columns_dropped": list(C.PERSONAL_DATA_COLUMNS),
        "user_id_replaced_by": [C.USER_KEY, C.USER_BUCKET],
        "params": {k: getattr(args, k) for k in (
            "session_gap_minutes", "max_seq_len", "min_seq_len", "user_buckets", "sequence_event_types",
            "late_event_days", "bot_max_events_per_minute", "bot_min_events", "popularity_windows",
            "favourite_categories", "outputs")},
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the job; returns the stats written to ``_stats.json``. Errors exit with a message."""
    args = parse_args(argv)
    key = _hash_key(args.hash_key_env)
    _check_today(args)
    owns_session = SparkSession.getActiveSession() is None  # leave a caller's (a test's) session running
    spark = (
        SparkSession.builder.appName(f"build_features ds={args.ds}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        .config("spark.sql.redaction.string.regex", _REDACT_KEY_PADS)
        # The window's events are cached grouped and sorted by user: the per-user aggregation (sequences)
        # then runs as a sort aggregate over that order instead of a hash aggregate that spills and sorts.
        .config("spark.sql.execution.replaceHashWithSortAgg", "true")
        .getOrCreate()
    )
    target = partition_path(args.features_root, args.ds)
    staging = staging_path_for(target)
    try:
        stats = _build(spark, args, key, staging)
        write_json_atomic(staging / "_stats.json", stats)
        publish_partition(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if owns_session:
            spark.stop()
    print(f"build_features: wrote {target} ({stats['users_with_sequences']} sequences, {stats['items']} items)")
    return stats


if __name__ == "__main__":
    main()
