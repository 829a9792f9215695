"""Nightly feature job: validated events of the trailing window -> sequences, vocabulary, popularity.

    spark-submit --master 'local[*]' spark_jobs/build_features.py --ds 2026-11-27 \\
        --validated-root var/lake/validated --features-root var/lake/features

Reads the existing ``validated_root/dt=D`` folders with ds - window_days < D <= ds, pseudonymizes
users (HMAC-SHA256 with the key in ``$PIPELINE_USER_HASH_KEY``), drops personal data and duplicate
events, and writes ``features_root/dt=<ds>/`` whole through a staging folder and one rename:
``sequences/``, ``item_vocab/``, ``item_popularity/``, ``sessions_summary/`` and ``_stats.json``.
A rerun of the same ds replaces the folder with identical content: the previous vocabulary is the
latest one strictly before ds.

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
from pipelines.features import partitions, transforms, vocab  # noqa: E402
from pipelines.io import partition_path, publish_partition, staging_path_for, write_json_atomic  # noqa: E402

INPUT_COLUMNS = (C.EVENT_ID, C.EVENT_TIME, C.USER_ID, C.EVENT_TYPE, C.ITEM_ID, C.CATEGORY)
VOCAB_DIR, SEQUENCES_DIR, POPULARITY_DIR, SESSIONS_DIR = (
    "item_vocab", "sequences", "item_popularity", "sessions_summary",
)
# The HMAC pads are 64-byte literals (128 hex digits) in the plan: keep them out of logs and the UI.
_REDACT_KEY_PADS = "(?i)[0-9a-f]{128}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 1")
    return value


def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date YYYY-MM-DD") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds", type=_iso_date, required=True, help="logical date YYYY-MM-DD (window end)")
    parser.add_argument("--validated-root", type=Path, required=True, help="folder of validated dt=* folders")
    parser.add_argument("--features-root", type=Path, required=True, help="folder the dt=<ds> output goes to")
    parser.add_argument("--window-days", type=_positive_int, default=90, help="trailing days read (default 90)")
    parser.add_argument("--session-gap-minutes", type=_positive_int, default=30, help="inactivity that splits sessions")
    parser.add_argument("--max-seq-len", type=_positive_int, default=50, help="items kept per user, plus 2 held out")
    parser.add_argument("--min-seq-len", type=_positive_int, default=3, help="users with fewer items are dropped")
    parser.add_argument("--user-buckets", type=_positive_int, default=100_000, help="number of user buckets")
    parser.add_argument(
        "--sequence-event-types", default=",".join(transforms.DEFAULT_SEQUENCE_EVENT_TYPES),
        help=f"comma list of events forming sequences; allowed: {','.join(C.ITEM_EVENT_TYPES)}",
    )
    parser.add_argument("--hash-key-env", default="PIPELINE_USER_HASH_KEY", help="env variable with the HMAC key")
    parser.add_argument("--shuffle-partitions", type=_positive_int, default=8, help="spark.sql.shuffle.partitions")
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


def _input_partitions(args: argparse.Namespace) -> list[Path]:
    today = partition_path(args.validated_root, args.ds)
    if not today.is_dir():
        raise SystemExit(
            f"build_features: {today} does not exist: there are no validated events for ds={args.ds}. "
            f"Run the validation task for {args.ds} first, then rerun this job."
        )
    return partitions.window_partitions(args.validated_root, args.ds, args.window_days)


def _read_events(spark, paths: list[Path]):
    raw = spark.read.parquet(*[str(p) for p in paths])
    missing = [c for c in INPUT_COLUMNS if c not in raw.columns]
    types = dict(raw.dtypes)
    if missing or types.get(C.EVENT_TIME) not in (None, "timestamp"):
        raise SystemExit(
            f"build_features: validated partitions {[p.name for p in paths]} under {paths[0].parent}: "
            f"missing columns {missing}, {C.EVENT_TIME} type {types.get(C.EVENT_TIME)!r} (want timestamp). "
            f"Rerun validation for those days with the current schema."
        )
    return raw


def _prepare_events(raw, args, key: bytes):
    """Raw rows -> pseudonymized, deduplicated events with session keys (what every output reads)."""
    events = transforms.drop_personal_data(raw)
    events = transforms.pseudonymize_users(events.select(*INPUT_COLUMNS), key, args.user_buckets)
    return transforms.build_sessions(transforms.drop_duplicate_events(events), args.session_gap_minutes)


def _write(df, path: Path) -> None:
    # One small file per output; repartition (not coalesce) keeps the upstream stages parallel.
    df.repartition(1).write.mode("errorifexists").parquet(str(path))


def _build(spark, args, key: bytes, paths: list[Path], staging: Path) -> dict:
    raw = _read_events(spark, paths)
    previous_dir = partitions.latest_partition_before(args.features_root, args.ds, VOCAB_DIR)
    previous = spark.read.parquet(str(previous_dir / VOCAB_DIR)) if previous_dir else None
    events = _prepare_events(raw, args, key).persist()
    try:
        events_in, events_after = raw.count(), events.count()
        _write(vocab.update_item_vocab(previous, events, args.ds).orderBy(C.ITEM_IDX), staging / VOCAB_DIR)
        item_vocab = spark.read.parquet(str(staging / VOCAB_DIR))
        sequences = transforms.build_item_sequences(
            events, item_vocab, args.sequence_event_types, args.max_seq_len, args.min_seq_len
        )
        _write(sequences.sortWithinPartitions(C.USER_KEY), staging / SEQUENCES_DIR)
        _write(vocab.item_popularity(events, item_vocab), staging / POPULARITY_DIR)
        _write(transforms.summarize_sessions(events), staging / SESSIONS_DIR)
        totals = events.agg(
            F.countDistinct(C.SESSION_KEY).alias("sessions"),
            F.countDistinct(C.USER_KEY).alias("users"),
        ).first()
    finally:
        events.unpersist()
    items = item_vocab.count()
    start, end = partitions.window_bounds(args.ds, args.window_days)
    return {
        "ds": args.ds,
        "window_start": start,
        "window_end": end,
        "window_days": args.window_days,
        "partitions_read": [p.name for p in paths],
        "previous_vocab": previous_dir.name if previous_dir else None,
        "events_in": events_in,
        "duplicates_dropped": events_in - events_after,
        "events_after_dedup": events_after,
        "sessions": totals["sessions"],
        "users": totals["users"],
        "users_with_sequences": spark.read.parquet(str(staging / SEQUENCES_DIR)).count(),
        "items": items,
        "new_items": items - (previous.count() if previous is not None else 0),
        "personal_data_columns_dropped": [c for c in C.PERSONAL_DATA_COLUMNS if c in raw.columns],
        "user_id_replaced_by": [C.USER_KEY, C.USER_BUCKET],
        "params": {
            "session_gap_minutes": args.session_gap_minutes,
            "max_seq_len": args.max_seq_len,
            "min_seq_len": args.min_seq_len,
            "user_buckets": args.user_buckets,
            "sequence_event_types": args.sequence_event_types,
        },
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the job; returns the stats written to ``_stats.json``. Errors exit with a message."""
    args = parse_args(argv)
    key = _hash_key(args.hash_key_env)
    paths = _input_partitions(args)
    owns_session = SparkSession.getActiveSession() is None  # leave a caller's (a test's) session running
    spark = (
        SparkSession.builder.appName(f"build_features ds={args.ds}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        .config("spark.sql.redaction.string.regex", _REDACT_KEY_PADS)
        .getOrCreate()
    )
    target = partition_path(args.features_root, args.ds)
    staging = staging_path_for(target)
    try:
        stats = _build(spark, args, key, paths, staging)
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
