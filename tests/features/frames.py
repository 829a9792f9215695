"""Tiny Spark frames and job runs shared by the feature tests (three-row fixtures, failure cases included)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json

from pipelines import columns as C
from pipelines import lake
from pipelines.config import REPO_ROOT
from pipelines.features import cleaning, transforms

JOB = REPO_ROOT / "spark_jobs" / "build_features.py"

KEY = b"test-key"

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def at(**delta) -> dt.datetime:
    return T0 + dt.timedelta(**delta)


def raw_events(spark, rows):
    """Raw-schema frame from (event_id, event_time, user_id, event_type, item_id) tuples."""
    from pyspark.sql import types as T

    special = {C.EVENT_TIME: T.TimestampType(), C.PRICE: T.DoubleType()}
    schema = T.StructType([T.StructField(c, special.get(c, T.StringType())) for c in C.RAW_COLUMNS])
    full = [
        {C.EVENT_ID: e, C.EVENT_TIME: t, C.USER_ID: u, C.EVENT_TYPE: typ, C.ITEM_ID: item,
         C.CATEGORY: item and f"cat-{item}", C.SESSION_ID: "s", C.DEVICE: "web", C.PRICE: 1.0,
         C.EMAIL: f"{u}@example.com", C.IP_ADDRESS: "10.0.0.1", C.USER_AGENT: "Mozilla"}
        for e, t, u, typ, item in rows
    ]
    return spark.createDataFrame([tuple(r.get(c) for c in C.RAW_COLUMNS) for r in full], schema)


def events(spark, rows):
    """Pseudonymized, deduplicated events, as the job feeds them to sequences and the vocabulary."""
    df = transforms.pseudonymize_users(transforms.drop_personal_data(raw_events(spark, rows)), KEY, 10)
    return cleaning.drop_duplicate_events(df)

DAYS = {
    "2026-11-25": [("a0", dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "i0")],
    "2026-11-26": [
        ("b1", dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "i1"),
        ("b1", dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "i1"),  # duplicate
        ("b2", dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "i2"),
        ("b3", dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC), "u2", C.PRODUCT_VIEW, "i2"),
    ],
    "2026-11-27": [
        ("c1", dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "i3"),
        ("c2", dt.datetime(2026, 11, 27, 8, 1, tzinfo=dt.UTC), "u1", C.PURCHASE, "i3"),
        ("c3", dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC), "u2", C.PRODUCT_VIEW, "i4"),
        ("c4", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC), "u3", C.PRODUCT_VIEW, "i5"),
    ],
}


def load_job():
    """Import the job from its file, as spark-submit runs it (spark_jobs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_features", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(spark, folder):
    """Every output's rows (in file order) plus _stats.json; each output but events/ must be a single file."""
    snap = {"_stats.json": json.loads((folder / lake.FEATURE_STATS).read_text())}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        rows = [tuple(r) for r in spark.read.parquet(str(sub)).collect()]
        if sub.name == "events":  # the day's clean events: several files, read back as a set
            snap[sub.name] = sorted(rows, key=repr)
            continue
        assert len(list(sub.glob("*.parquet"))) == 1, sub
        snap[sub.name] = rows
    return snap


def landed(spark, rows, landed):
    """Raw-schema events with the day they landed in."""
    from pyspark.sql import functions as F

    return raw_events(spark, rows).withColumn(cleaning.LANDED_DT, F.lit(landed))

NIGHTS = {
    "2026-11-26": [("x1", dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "iA")],
    "2026-11-27": [
        ("x1", dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "iA"),  # replay of the 26th's
        ("x2", dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "iB"),  # late by one day: kept
        ("x3", dt.datetime(2026, 11, 25, 11, tzinfo=dt.UTC), "u1", C.PRODUCT_VIEW, "iZ"),  # two days late: dropped
        ("x4", dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC), "u1", C.PURCHASE, "iC"),
        *[(f"bot{n}", dt.datetime(2026, 11, 27, 12, 0, n, tzinfo=dt.UTC), "u9", C.PRODUCT_VIEW, f"b{n % 3}")
          for n in range(12)],  # 12 events in 11 seconds: a bot session
    ],
}


def job_args(validated, **features) -> list[str]:
    """The job's arguments: where the validated days are, and the features section as the run's overrides."""
    return ["--validated-root", str(validated), "--overrides", json.dumps({"features": features})]


def write_validated(spark, root, days: dict) -> None:
    """``{day: rows}`` as validated partitions ``root/dt=<day>``, the way validation leaves them for the job."""
    for day, rows in days.items():
        raw_events(spark, rows).write.parquet(str(lake.partition_path(root, day)))
