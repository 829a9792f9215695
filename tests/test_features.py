"""Feature job: privacy, dedup, sessions, sequences, vocabulary, window and the end-to-end job."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib.util
import json
from pathlib import Path

import pytest

from pipelines import columns as C
from pipelines.features import partitions, transforms, vocab

pytestmark = pytest.mark.spark

KEY = b"test-key"
JOB = Path(__file__).resolve().parents[1] / "spark_jobs" / "build_features.py"
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def _at(**delta) -> dt.datetime:
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
    return transforms.drop_duplicate_events(df)


def test_hmac_equals_python_hmac_and_bucket_is_stable(spark):
    users = ["u1", "ünïcode-user", "x" * 200]
    df = raw_events(spark, [(f"e{i}", T0, u, C.SEARCH, None) for i, u in enumerate(users)])
    for key in (KEY, b"k" * 100):  # a key longer than the block size is hashed first
        out = transforms.pseudonymize_users(df, key, n_buckets=7).collect()
        want = {hmac.new(key, u.encode(), hashlib.sha256).hexdigest() for u in users}
        assert {r[C.USER_KEY] for r in out} == want
        for r in out:
            assert r[C.USER_BUCKET] == int(r[C.USER_KEY][:15], 16) % 7


def test_personal_data_and_raw_user_id_are_gone(spark):
    out = events(spark, [("e1", T0, "u1", C.PRODUCT_VIEW, "i1")])
    assert not set(C.PERSONAL_DATA_COLUMNS + (C.USER_ID,)) & set(out.columns)
    assert {C.USER_KEY, C.USER_BUCKET} <= set(out.columns)


def test_duplicate_events_keep_one_deterministic_row(spark):
    df = raw_events(spark, [
        ("e1", _at(seconds=5), "u1", C.PRODUCT_VIEW, "late-copy"),
        ("e1", T0, "u1", C.PRODUCT_VIEW, "first"),
        ("e2", T0, "u1", C.PRODUCT_VIEW, "i2"),
    ])
    out = transforms.drop_duplicate_events(df).orderBy(C.EVENT_ID).collect()
    assert [(r[C.EVENT_ID], r[C.ITEM_ID]) for r in out] == [("e1", "first"), ("e2", "i2")]


def test_sessions_split_only_after_the_gap_out_of_order_input(spark):
    rows = [  # shuffled on purpose
        ("e3", _at(minutes=60, seconds=1), "u1", C.PRODUCT_VIEW, "i3"),  # 30 min + 1 s after e2: new
        ("e1", T0, "u1", C.PRODUCT_VIEW, "i1"),
        ("e4", _at(minutes=5), "u2", C.PRODUCT_VIEW, "i1"),
        ("e2", _at(minutes=30), "u1", C.PRODUCT_VIEW, "i2"),  # exactly 30 min after e1: same session
    ]
    out = {r[C.EVENT_ID]: r[C.SESSION_KEY]
           for r in transforms.build_sessions(events(spark, rows), gap_minutes=30).collect()}
    assert out["e1"] == out["e2"] != out["e3"]
    assert out["e4"] not in (out["e1"], out["e3"])
    assert out["e1"].endswith(f":{int(T0.timestamp() * 1_000_000)}")


def test_item_sequences_collapse_truncate_and_drop_short_users(spark):
    rows = [
        ("e1", _at(minutes=1), "a", C.PRODUCT_VIEW, "i1"),
        ("e2", _at(minutes=2), "a", C.ADD_TO_CART, "i1"),  # repeat of i1: collapsed
        ("e3", _at(minutes=3), "a", C.PRODUCT_VIEW, "i2"),
        ("e4", _at(minutes=4), "a", C.SEARCH, None),
        ("e6", _at(minutes=5), "a", C.PRODUCT_VIEW, "i3"),
        ("e5", _at(minutes=5), "a", C.PURCHASE, "i4"),  # same time as e6: event_id breaks the tie
        ("e7", _at(minutes=6), "a", C.AD_IMPRESSION, "i5"),  # not a sequence event type
        ("e8", T0, "b", C.PRODUCT_VIEW, "i1"),  # one item only: below min_seq_len
    ]
    ev = events(spark, rows)
    voc = vocab.update_item_vocab(None, ev, "2026-11-27")
    idx = {r[C.ITEM_ID]: r[C.ITEM_IDX] for r in voc.collect()}
    out = transforms.build_item_sequences(ev, voc, max_seq_len=1, min_seq_len=3).collect()
    assert len(out) == 1
    assert out[0][C.ITEM_SEQ] == [idx["i2"], idx["i4"], idx["i3"]]  # last max_seq_len + 2 of i1,i2,i4,i3
    assert out[0][C.PURCHASED_ITEMS] == [idx["i4"]]
    long = transforms.build_item_sequences(ev, voc, max_seq_len=50, min_seq_len=3, collapse_repeats=False)
    assert long.first()[C.ITEM_SEQ] == [idx[i] for i in ("i1", "i1", "i2", "i4", "i3")]


def test_vocab_keeps_old_ids_and_appends_new_ones_in_first_seen_order(spark):
    previous = spark.createDataFrame(
        [("old-b", 1, "c", "2026-11-01"), ("old-a", 2, "c", "2026-11-02")], list(vocab.VOCAB_COLUMNS)
    )
    ev = events(spark, [
        ("e1", _at(hours=2), "u", C.PRODUCT_VIEW, "new-z"),
        ("e2", T0, "u", C.PRODUCT_VIEW, "new-y"),
        ("e3", T0, "u", C.PRODUCT_VIEW, "new-x"),  # same time as new-y: item_id decides
        ("e4", T0, "u", C.PRODUCT_VIEW, "old-a"),
        ("e5", _at(days=1), "u", C.PRODUCT_VIEW, "after-ds"),  # after ds: ignored
    ])
    voc = vocab.update_item_vocab(previous, ev, "2026-11-27")
    out = voc.orderBy(C.ITEM_IDX).collect()
    assert [(r[C.ITEM_ID], r[C.ITEM_IDX]) for r in out] == [
        ("old-b", 1), ("old-a", 2), ("new-x", 3), ("new-y", 4), ("new-z", 5)]
    assert out[2][C.FIRST_SEEN_DT] == "2026-11-27" and out[2][C.CATEGORY] == "cat-new-x"
    assert out[1][C.FIRST_SEEN_DT] == "2026-11-02"  # old rows unchanged
    pop = vocab.item_popularity(ev, voc).collect()
    assert {r[C.ITEM_IDX]: (r[C.N_EVENTS], r[C.N_USERS]) for r in pop} == {i: (1, 1) for i in (2, 3, 4, 5)}


def test_window_lists_only_the_needed_partitions(tmp_path):
    for name in ("dt=2026-11-24", "dt=2026-11-25", "dt=2026-11-27", "dt=2026-11-28",
                 ".staging-dt=2026-11-26-abc", "dt=garbage", "notes"):
        (tmp_path / name).mkdir()
    got = partitions.window_partitions(tmp_path, "2026-11-27", window_days=3)
    assert [p.name for p in got] == ["dt=2026-11-25", "dt=2026-11-27"]
    (tmp_path / "dt=2026-11-25" / "item_vocab").mkdir()
    (tmp_path / "dt=2026-11-27" / "item_vocab").mkdir()  # the run's own date is never "previous"
    assert partitions.latest_partition_before(tmp_path, "2026-11-27", "item_vocab").name == "dt=2026-11-25"
    assert partitions.latest_partition_before(tmp_path, "2026-11-25", "item_vocab") is None


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


def _load_job():
    """Import the job from its file, as spark-submit runs it (spark_jobs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_features", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(spark, folder):
    """Every output's rows (in file order) plus _stats.json; each output must be a single file."""
    snap = {"_stats.json": json.loads((folder / "_stats.json").read_text())}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        assert len(list(sub.glob("*.parquet"))) == 1, sub
        snap[sub.name] = [tuple(r) for r in spark.read.parquet(str(sub)).collect()]
    return snap


def test_main_builds_the_day_idempotently(spark, tmp_path, monkeypatch):
    build_features = _load_job()

    validated, features = tmp_path / "validated", tmp_path / "features"
    for day, rows in DAYS.items():
        raw_events(spark, rows).write.parquet(str(validated / f"dt={day}"))
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    common = ["--validated-root", str(validated), "--features-root", str(features), "--window-days", "2",
              "--min-seq-len", "2", "--user-buckets", "10", "--shuffle-partitions", "1",
              "--hash-key-env", "TEST_HASH_KEY"]

    build_features.main(["--ds", "2026-11-26", *common])
    stats = build_features.main(["--ds", "2026-11-27", *common])
    first = _snapshot(spark, features / "dt=2026-11-27")
    build_features.main(["--ds", "2026-11-27", *common])  # rerun: replaced, identical
    assert _snapshot(spark, features / "dt=2026-11-27") == first
    assert sorted(p.name for p in features.iterdir()) == ["dt=2026-11-26", "dt=2026-11-27"]

    assert first["_stats.json"] == stats
    assert stats["partitions_read"] == ["dt=2026-11-26", "dt=2026-11-27"]
    assert (stats["events_in"], stats["duplicates_dropped"], stats["events_after_dedup"]) == (8, 1, 7)
    assert (stats["users"], stats["users_with_sequences"], stats["sessions"]) == (3, 2, 5)
    assert (stats["items"], stats["new_items"], stats["previous_vocab"]) == (6, 3, "dt=2026-11-26")
    assert stats["personal_data_columns_dropped"] == list(C.PERSONAL_DATA_COLUMNS)
    day1_vocab = _snapshot(spark, features / "dt=2026-11-26")["item_vocab"]
    assert first["item_vocab"][: len(day1_vocab)] == day1_vocab  # old ids kept, new ones appended
    sequences = spark.read.parquet(str(features / "dt=2026-11-27" / "sequences"))
    assert sequences.columns == [C.USER_KEY, C.USER_BUCKET, C.ITEM_SEQ, C.PURCHASED_ITEMS]
    idx = {r[0]: r[1] for r in first["item_vocab"]}
    u1 = hmac.new(b"secret", b"u1", hashlib.sha256).hexdigest()
    assert {r[0]: (r[2], r[3]) for r in first["sequences"]}[u1] == ([idx[i] for i in ("i1", "i2", "i3")], [idx["i3"]])


def test_main_fails_clearly_without_key_or_todays_partition(tmp_path, monkeypatch):
    build_features = _load_job()

    args = ["--ds", "2026-11-28", "--validated-root", str(tmp_path), "--features-root", str(tmp_path / "f")]
    monkeypatch.delenv("PIPELINE_USER_HASH_KEY", raising=False)
    with pytest.raises(SystemExit, match="PIPELINE_USER_HASH_KEY is not set"):
        build_features.main(args)
    monkeypatch.setenv("PIPELINE_USER_HASH_KEY", "k")
    with pytest.raises(SystemExit, match=r"dt=2026-11-28 does not exist.*Run the validation task"):
        build_features.main(args)
