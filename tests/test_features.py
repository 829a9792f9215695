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
from pipelines.features import aggregates, cleaning, partitions, transforms, vocab

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
    return cleaning.drop_duplicate_events(df)


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
    out = cleaning.drop_duplicate_events(df).orderBy(C.EVENT_ID).collect()
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
    """Every output's rows (in file order) plus _stats.json; each output but events/ must be a single file."""
    snap = {"_stats.json": json.loads((folder / "_stats.json").read_text())}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        rows = [tuple(r) for r in spark.read.parquet(str(sub)).collect()]
        if sub.name == "events":  # the day's clean events: several files, read back as a set
            snap[sub.name] = sorted(rows, key=repr)
            continue
        assert len(list(sub.glob("*.parquet"))) == 1, sub
        snap[sub.name] = rows
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
    assert stats["partitions_read"] == ["dt=2026-11-27"]  # incremental: the 26th's clean events are reused
    assert stats["clean_events_reused"] == ["2026-11-26"]
    assert (stats["events_in"], stats["duplicates_dropped"], stats["events_after_dedup"]) == (4, 0, 4)
    assert stats["events_in_window"] == 7
    assert (stats["users"], stats["users_with_sequences"], stats["sessions"]) == (3, 2, 5)
    assert (stats["items"], stats["new_items"], stats["previous_vocab"]) == (6, 3, "dt=2026-11-26")
    assert stats["personal_data_columns_dropped"] == list(C.PERSONAL_DATA_COLUMNS)
    day1_vocab = _snapshot(spark, features / "dt=2026-11-26")["item_vocab"]
    assert first["item_vocab"][: len(day1_vocab)] == day1_vocab  # old ids kept, new ones appended
    sequences = spark.read.parquet(str(features / "dt=2026-11-27" / "sequences"))
    assert sequences.columns[:4] == [C.USER_KEY, C.USER_BUCKET, C.ITEM_SEQ, C.PURCHASED_ITEMS]  # the trainer's
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


def _landed(spark, rows, landed):
    """Raw-schema events with the day they landed in."""
    from pyspark.sql import functions as F

    return raw_events(spark, rows).withColumn(cleaning.LANDED_DT, F.lit(landed))


def test_late_events_within_the_allowance_are_kept_older_and_future_ones_dropped(spark):
    day = dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
    df = _landed(spark, [
        ("on-time", day, "u", C.PRODUCT_VIEW, "i1"),
        ("late-1", day - dt.timedelta(days=1), "u", C.PRODUCT_VIEW, "i1"),
        ("late-2", day - dt.timedelta(days=2), "u", C.PRODUCT_VIEW, "i1"),
        ("future", day + dt.timedelta(days=1), "u", C.PRODUCT_VIEW, "i1"),
    ], "2026-11-27")
    kept = {r[C.EVENT_ID] for r in cleaning.keep_allowed_lateness(df, late_event_days=1).collect()}
    assert kept == {"on-time", "late-1"}
    assert {r[C.EVENT_ID] for r in cleaning.keep_allowed_lateness(df, 0).collect()} == {"on-time"}


def test_bot_sessions_need_enough_events_at_a_high_rate(spark):
    rows = [(f"fast{n}", _at(seconds=10 * n), "bot", C.PRODUCT_VIEW, "i1") for n in range(3)]  # 3 in 20 s
    rows += [(f"slow{n}", _at(seconds=50 * n), "human", C.PRODUCT_VIEW, "i1") for n in range(4)]  # 4 in 150 s
    rows += [(f"short{n}", _at(seconds=n), "quick", C.PRODUCT_VIEW, "i1") for n in range(2)]  # 2 in 1 s
    sessions = transforms.build_sessions(events(spark, rows), gap_minutes=30)
    activity = cleaning.session_activity(sessions)
    bots = cleaning.bot_sessions(activity, max_events_per_minute=2, min_events=3).collect()
    flagged = cleaning.flag_bots(sessions, spark.createDataFrame(bots), len(bots)).collect()
    assert {r[C.EVENT_ID] for r in flagged if r[cleaning.IS_BOT]} == {"fast0", "fast1", "fast2"}
    assert [r["events"] for r in bots] == [3]


def test_popularity_rfm_and_campaigns_over_trailing_windows(spark):
    from pyspark.sql import functions as F

    ds = "2026-11-27"
    rows = [
        ("e1", _at(days=-10), "a", C.PURCHASE, "i1"),  # only in the 30-day window
        ("e2", _at(), "a", C.PRODUCT_VIEW, "i1"),
        ("e3", _at(minutes=1), "b", C.PRODUCT_VIEW, "i1"),
        ("e4", _at(days=-3), "b", C.PRODUCT_VIEW, "i2"),
        ("e5", _at(minutes=2), "a", C.AD_IMPRESSION, "i2"),
        ("e6", _at(minutes=3), "a", C.AD_CLICK, "i2"),
        ("e7", _at(minutes=4), "b", C.AD_IMPRESSION, "i2"),
    ]
    ev = transforms.build_sessions(events(spark, rows)).withColumn(
        C.CAMPAIGN, F.when(F.col(C.EVENT_TYPE).startswith("ad_"), F.lit("black-friday")))
    voc = vocab.update_item_vocab(None, ev, ds)
    idx = {r[C.ITEM_ID]: r[C.ITEM_IDX] for r in voc.collect()}
    pop = aggregates.popularity_by_window(ev, voc, ds, [1, 7, 30]).collect()
    got = {(r[aggregates.WINDOW_DAYS], r[C.ITEM_IDX]): (r[aggregates.RANK], r[C.N_EVENTS], r[C.N_USERS]) for r in pop}
    assert got[(1, idx["i1"])] == (2, 2, 2) and got[(1, idx["i2"])] == (1, 3, 2)
    assert got[(7, idx["i2"])] == (1, 4, 2) and got[(30, idx["i1"])] == (2, 3, 2)
    rfm = {r[C.USER_KEY]: r for r in aggregates.user_rfm(ev, ds, top_categories=1).collect()}
    a = hmac.new(KEY, b"a", hashlib.sha256).hexdigest()
    assert (rfm[a][aggregates.RECENCY_DAYS], rfm[a][aggregates.DAYS_SINCE_PURCHASE]) == (0, 10)
    assert (rfm[a][aggregates.N_PURCHASES], rfm[a][aggregates.MONETARY], rfm[a][C.N_EVENTS]) == (1, 1.0, 4)
    assert rfm[a][aggregates.FAVOURITE_CATEGORIES] == ["cat-i1"]  # i1 twice, i2 twice: ties by name
    campaigns = aggregates.campaign_performance(ev, ds, [1]).collect()
    assert [(r[C.CAMPAIGN], r[aggregates.IMPRESSIONS], r[aggregates.CLICKS], r[aggregates.CTR]) for r in campaigns] == [
        ("black-friday", 2, 1, 0.5)]
    items = [(r[C.CAMPAIGN], r[C.ITEM_IDX], r[C.N_EVENTS]) for r in aggregates.campaign_items(ev, voc).collect()]
    assert items == [("black-friday", idx["i2"], 3)]  # the campaign's ad events of the window, on their item
    everything_tagged = ev.withColumn(C.CAMPAIGN, F.lit("black-friday"))  # views after an ad keep its tag
    assert aggregates.campaign_items(everything_tagged, voc).collect() == aggregates.campaign_items(ev, voc).collect()


def test_padded_sequences_are_fixed_width_and_left_padded(spark):
    df = spark.createDataFrame([([1, 2, 3, 4, 5],), ([7],)], "item_seq array<int>")
    out = transforms.add_padded_sequence(df, width=3).collect()
    assert [(r[transforms.ITEM_SEQ_PADDED], r[transforms.SEQ_LEN]) for r in out] == [([3, 4, 5], 5), ([0, 0, 7], 1)]


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


def test_late_replayed_and_bot_events_and_incremental_nights(spark, tmp_path, monkeypatch):
    build_features = _load_job()
    validated = tmp_path / "validated"
    for day, rows in NIGHTS.items():
        raw_events(spark, rows).write.parquet(str(validated / f"dt={day}"))
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    common = ["--validated-root", str(validated), "--window-days", "3", "--min-seq-len", "2", "--user-buckets", "10",
              "--shuffle-partitions", "1", "--hash-key-env", "TEST_HASH_KEY", "--bot-max-events-per-minute", "10"]
    nightly = tmp_path / "nightly"
    build_features.main(["--ds", "2026-11-26", "--features-root", str(nightly), *common])
    stats = build_features.main(["--ds", "2026-11-27", "--features-root", str(nightly), *common])
    # x1's replay and x2 are late and allowed (the replay is then dropped as a duplicate); x3 is too late
    assert (stats["events_in"], stats["late_events_kept"], stats["late_events_dropped"]) == (16, 2, 1)
    assert (stats["duplicates_dropped"], stats["bot_sessions"], stats["bot_events_excluded"]) == (1, 1, 12)
    assert stats["events_in"] == (stats["late_events_dropped"] + stats["future_events_dropped"]
                                  + stats["duplicates_dropped"] + stats["events_after_dedup"])
    assert stats["events_in_window"] == 3 and stats["partitions_read"] == ["dt=2026-11-27"]
    night = _snapshot(spark, nightly / "dt=2026-11-27")
    idx = {r[0]: r[1] for r in night["item_vocab"]}
    [(user_key, _, seq, bought, padded, length)] = night["sequences"]  # u9, the bot, has no sequence
    assert (seq, bought, length) == ([idx["iA"], idx["iB"], idx["iC"]], [idx["iC"]], 3)  # late iB in its place
    assert padded == [0] * 49 + seq
    assert sum(1 for row in night["events"] if row[-1]) == 12  # bot events are kept, flagged
    scratch = tmp_path / "scratch"  # the same night with nothing to reuse: same features
    fresh = build_features.main(["--ds", "2026-11-27", "--features-root", str(scratch), *common])
    assert fresh["partitions_read"] == ["dt=2026-11-26", "dt=2026-11-27"]
    again = _snapshot(spark, scratch / "dt=2026-11-27")
    for output in ("sequences", "item_popularity_windows", "user_rfm", "campaign_performance", "campaign_items",
                   "events"):
        assert again[output] == night[output], output
