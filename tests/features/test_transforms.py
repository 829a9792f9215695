"""Feature transformations on three-row frames: privacy, dedup, sessions, sequences, vocabulary, aggregates."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from pipelines import columns as C
from pipelines.features import aggregates, cleaning, transforms, vocab
from tests.features.frames import KEY, T0, at, events, landed, raw_events

pytestmark = pytest.mark.spark


def test_hmac_equals_python_hmac_and_bucket_is_stable(spark):
    users = ["u1", "ünïcode-user", "x" * 200]
    df = raw_events(spark, [(f"e{i}", T0, u, C.SEARCH, None) for i, u in enumerate(users)])
    for key in (KEY, b"k" * 100):  # a key longer than the block size is hashed first
        out = transforms.pseudonymize_users(df, key, n_buckets=7).collect()
        want = {hmac.new(key, u.encode(), hashlib.sha256).hexdigest() for u in users}
        assert {r[C.USER_KEY] for r in out} == want
        for r in out:
            assert r[C.USER_BUCKET] == int(r[C.USER_KEY][:15], 16) % 7


def test_hashing_each_user_once_gives_the_per_row_keys(spark):
    users = ["u1", "u2", "u1", None, "ünïcode-user", "u2"]
    df = raw_events(spark, [(f"e{i}", T0, u, C.SEARCH, None) for i, u in enumerate(users)])
    wider = raw_events(spark, [(f"w{i}", T0, u, C.SEARCH, None) for i, u in enumerate([*users, "only-here"])])
    per_row = transforms.pseudonymize_users(df, KEY, n_buckets=7)
    once = transforms.pseudonymize_each_user_once(df, wider, KEY, n_buckets=7)
    assert sorted(once.columns) == sorted(per_row.columns)
    rows = lambda frame: sorted(tuple(r) for r in frame.select(*sorted(per_row.columns)).collect())  # noqa: E731
    assert rows(once) == rows(per_row)
    assert once.count() == len(users)  # the extra id in ``wider`` adds no row; the null id keeps its row


def test_personal_data_and_raw_user_id_are_gone(spark):
    out = events(spark, [("e1", T0, "u1", C.PRODUCT_VIEW, "i1")])
    assert not set(C.PERSONAL_DATA_COLUMNS + (C.USER_ID,)) & set(out.columns)
    assert {C.USER_KEY, C.USER_BUCKET} <= set(out.columns)


def test_duplicate_events_keep_one_deterministic_row(spark):
    df = raw_events(spark, [
        ("e1", at(seconds=5), "u1", C.PRODUCT_VIEW, "late-copy"),
        ("e1", T0, "u1", C.PRODUCT_VIEW, "first"),
        ("e2", T0, "u1", C.PRODUCT_VIEW, "i2"),
    ])
    out = cleaning.drop_duplicate_events(df).orderBy(C.EVENT_ID).collect()
    assert [(r[C.EVENT_ID], r[C.ITEM_ID]) for r in out] == [("e1", "first"), ("e2", "i2")]


def test_sessions_split_only_after_the_gap_out_of_order_input(spark):
    rows = [  # shuffled on purpose
        ("e3", at(minutes=60, seconds=1), "u1", C.PRODUCT_VIEW, "i3"),  # 30 min + 1 s after e2: new
        ("e1", T0, "u1", C.PRODUCT_VIEW, "i1"),
        ("e4", at(minutes=5), "u2", C.PRODUCT_VIEW, "i1"),
        ("e2", at(minutes=30), "u1", C.PRODUCT_VIEW, "i2"),  # exactly 30 min after e1: same session
    ]
    out = {r[C.EVENT_ID]: r[C.SESSION_KEY]
           for r in transforms.build_sessions(events(spark, rows), gap_minutes=30).collect()}
    assert out["e1"] == out["e2"] != out["e3"]
    assert out["e4"] not in (out["e1"], out["e3"])
    assert out["e1"].endswith(f":{int(T0.timestamp() * 1_000_000)}")


def test_item_sequences_collapse_truncate_and_drop_short_users(spark):
    rows = [
        ("e1", at(minutes=1), "a", C.PRODUCT_VIEW, "i1"),
        ("e2", at(minutes=2), "a", C.ADD_TO_CART, "i1"),  # repeat of i1: collapsed
        ("e3", at(minutes=3), "a", C.PRODUCT_VIEW, "i2"),
        ("e4", at(minutes=4), "a", C.SEARCH, None),
        ("e6", at(minutes=5), "a", C.PRODUCT_VIEW, "i3"),
        ("e5", at(minutes=5), "a", C.PURCHASE, "i4"),  # same time as e6: event_id breaks the tie
        ("e7", at(minutes=6), "a", C.AD_IMPRESSION, "i5"),  # not a sequence event type
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
        ("e1", at(hours=2), "u", C.PRODUCT_VIEW, "new-z"),
        ("e2", T0, "u", C.PRODUCT_VIEW, "new-y"),
        ("e3", T0, "u", C.PRODUCT_VIEW, "new-x"),  # same time as new-y: item_id decides
        ("e4", T0, "u", C.PRODUCT_VIEW, "old-a"),
        ("e5", at(days=1), "u", C.PRODUCT_VIEW, "after-ds"),  # after ds: ignored
    ])
    voc = vocab.update_item_vocab(previous, ev, "2026-11-27")
    out = voc.orderBy(C.ITEM_IDX).collect()
    assert [(r[C.ITEM_ID], r[C.ITEM_IDX]) for r in out] == [
        ("old-b", 1), ("old-a", 2), ("new-x", 3), ("new-y", 4), ("new-z", 5)]
    assert out[2][C.FIRST_SEEN_DT] == "2026-11-27" and out[2][C.CATEGORY] == "cat-new-x"
    assert out[1][C.FIRST_SEEN_DT] == "2026-11-02"  # old rows unchanged
    pop = vocab.item_popularity(ev, voc).collect()
    assert {r[C.ITEM_IDX]: (r[C.N_EVENTS], r[C.N_USERS]) for r in pop} == {i: (1, 1) for i in (2, 3, 4, 5)}


def test_late_events_within_the_allowance_are_kept_older_and_future_ones_dropped(spark):
    day = dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)
    df = landed(spark, [
        ("on-time", day, "u", C.PRODUCT_VIEW, "i1"),
        ("late-1", day - dt.timedelta(days=1), "u", C.PRODUCT_VIEW, "i1"),
        ("late-2", day - dt.timedelta(days=2), "u", C.PRODUCT_VIEW, "i1"),
        ("future", day + dt.timedelta(days=1), "u", C.PRODUCT_VIEW, "i1"),
    ], "2026-11-27")
    kept = {r[C.EVENT_ID] for r in cleaning.keep_allowed_lateness(df, late_event_days=1).collect()}
    assert kept == {"on-time", "late-1"}
    assert {r[C.EVENT_ID] for r in cleaning.keep_allowed_lateness(df, 0).collect()} == {"on-time"}


def test_bot_sessions_need_enough_events_at_a_high_rate(spark):
    rows = [(f"fast{n}", at(seconds=10 * n), "bot", C.PRODUCT_VIEW, "i1") for n in range(3)]  # 3 in 20 s
    rows += [(f"slow{n}", at(seconds=50 * n), "human", C.PRODUCT_VIEW, "i1") for n in range(4)]  # 4 in 150 s
    rows += [(f"short{n}", at(seconds=n), "quick", C.PRODUCT_VIEW, "i1") for n in range(2)]  # 2 in 1 s
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
        ("e1", at(days=-10), "a", C.PURCHASE, "i1"),  # only in the 30-day window
        ("e2", at(), "a", C.PRODUCT_VIEW, "i1"),
        ("e3", at(minutes=1), "b", C.PRODUCT_VIEW, "i1"),
        ("e4", at(days=-3), "b", C.PRODUCT_VIEW, "i2"),
        ("e5", at(minutes=2), "a", C.AD_IMPRESSION, "i2"),
        ("e6", at(minutes=3), "a", C.AD_CLICK, "i2"),
        ("e7", at(minutes=4), "b", C.AD_IMPRESSION, "i2"),
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


def test_sessions_built_on_the_raw_id_and_hashed_once_equal_hashing_every_row_first(spark):
    from pyspark.sql import functions as F

    from pipelines.features.clean_events import CleanParams, sessionise
    from pipelines.features.cleaning import LANDED_DT

    rows = [("e1", T0, "u:1", C.PRODUCT_VIEW, "i1"), ("e2", at(minutes=30), "u:1", C.PRODUCT_VIEW, "i2"),
            ("e3", at(minutes=61), "u:1", C.PRODUCT_VIEW, "i3"), ("e4", T0, "u2", C.PRODUCT_VIEW, "i1"),
            ("e5", at(hours=20), "u2", C.PURCHASE, "i1"), ("e6", at(minutes=1), "u3", C.SEARCH, None)]
    df = raw_events(spark, rows).withColumn(
        LANDED_DT, F.when(F.col(C.EVENT_ID) == "e5", "2026-11-28").otherwise("2026-11-27"))
    params = CleanParams(late_event_days=1, session_gap_minutes=30, user_buckets=7, bot_max_events_per_minute=30.0,
                         bot_min_events=10)
    columns = [C.EVENT_ID, C.USER_KEY, C.USER_BUCKET, C.SESSION_KEY]
    once, cached = sessionise(df, df, KEY, params, once_up_to=100)
    per_row, none_cached = sessionise(df, df, KEY, params, once_up_to=0)
    assert cached and not none_cached  # the first path really took the hash-once route
    got = sorted(tuple(r) for r in once.select(*columns).collect())
    assert got == sorted(tuple(r) for r in per_row.select(*columns).collect())
    assert C.USER_ID not in once.columns and "_raw_session" not in once.columns
    sessions = {r[0]: r[3] for r in got}
    assert sessions["e1"] == sessions["e2"] != sessions["e3"]  # a gap of exactly 30 minutes stays in
    assert sessions["e4"] != sessions["e5"]  # another landed day starts a new session
    assert sessions["e1"].startswith(hmac.new(KEY, b"u:1", hashlib.sha256).hexdigest() + ":")
    fallback, _ = sessionise(df, df, KEY, params, once_up_to=2)  # 3 users: above the bound, every row
    assert sorted(tuple(r) for r in fallback.select(*columns).collect()) == got


def test_the_suites_spark_driver_runs_with_the_configs_jvm_options(spark):
    """conf/test's spark.java_options reach the JVM itself (a session of seconds keeps the JIT's first tier)."""
    from pipelines.config import load_config

    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert load_config().spark.java_options in list(runtime.getInputArguments())
