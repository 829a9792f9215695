"""The feature job end to end on tiny validated days: idempotent, incremental, and clear when it cannot run."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipelines import columns as C
from pipelines import lake
from tests.features.frames import DAYS, NIGHTS, job_args, load_job, snapshot, write_validated

pytestmark = pytest.mark.spark


def test_main_builds_the_day_idempotently(spark, tmp_path, monkeypatch):
    build_features = load_job()

    validated, features = tmp_path / "validated", tmp_path / "features"
    write_validated(spark, validated, DAYS)
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    common = ["--features-root", str(features), *job_args(validated, window_days=2, min_seq_len=2, user_buckets=10,
                                                          shuffle_partitions=1, hash_key_env="TEST_HASH_KEY")]

    build_features.main(["--ds", "2026-11-26", *common])
    stats = build_features.main(["--ds", "2026-11-27", *common])
    first = snapshot(spark, features / "dt=2026-11-27")
    build_features.main(["--ds", "2026-11-27", *common])  # rerun: replaced, identical
    assert snapshot(spark, features / "dt=2026-11-27") == first
    assert sorted(p.name for p in features.iterdir()) == ["dt=2026-11-26", "dt=2026-11-27"]

    assert first["_stats.json"] == stats
    assert stats["partitions_read"] == ["dt=2026-11-27"]  # incremental: the 26th's clean events are reused
    assert stats["clean_events_reused"] == ["2026-11-26"]
    assert (stats["events_in"], stats["duplicates_dropped"], stats["events_after_dedup"]) == (4, 0, 4)
    assert stats["events_in_window"] == 7
    assert (stats["users"], stats["users_with_sequences"], stats["sessions"]) == (3, 2, 5)
    assert (stats["items"], stats["new_items"], stats["previous_vocab"]) == (6, 3, "dt=2026-11-26")
    assert (stats["events_landed_today"], stats["items_without_category"]) == (4, 0)
    # The core outputs count the window with a Spark job; the full ones read it back from their tables.
    core = build_features.main(["--ds", "2026-11-27", "--outputs", "core", "--features-root", str(tmp_path / "core"),
                                *common[2:]])
    counted = ("events_in_window", "users", "sessions", "users_with_sequences", "events_landed_today",
               "items_without_category")  # not items: a first night's vocabulary lacks the 25th's item
    assert {key: core[key] for key in counted} == {key: stats[key] for key in counted}
    assert stats["personal_data_columns_dropped"] == list(C.PERSONAL_DATA_COLUMNS)
    day1_vocab = snapshot(spark, features / "dt=2026-11-26")["item_vocab"]
    assert first["item_vocab"][: len(day1_vocab)] == day1_vocab  # old ids kept, new ones appended
    sequences = spark.read.parquet(str(features / "dt=2026-11-27" / lake.SEQUENCES))
    assert sequences.columns[:4] == [C.USER_KEY, C.USER_BUCKET, C.ITEM_SEQ, C.PURCHASED_ITEMS]  # the trainer's
    idx = {r[0]: r[1] for r in first["item_vocab"]}
    u1 = hmac.new(b"secret", b"u1", hashlib.sha256).hexdigest()
    assert {r[0]: (r[2], r[3]) for r in first["sequences"]}[u1] == ([idx[i] for i in ("i1", "i2", "i3")], [idx["i3"]])


def test_main_fails_clearly_without_key_or_todays_partition(tmp_path, monkeypatch):
    build_features = load_job()

    args = ["--ds", "2026-11-28", "--validated-root", str(tmp_path), "--features-root", str(tmp_path / "f")]
    monkeypatch.delenv("PIPELINE_USER_HASH_KEY", raising=False)
    with pytest.raises(SystemExit, match="PIPELINE_USER_HASH_KEY is not set"):
        build_features.main(args)
    monkeypatch.setenv("PIPELINE_USER_HASH_KEY", "k")
    with pytest.raises(SystemExit, match=r"dt=2026-11-28 does not exist.*Run the validation task"):
        build_features.main(args)


def test_late_replayed_and_bot_events_and_incremental_nights(spark, tmp_path, monkeypatch):
    build_features = load_job()
    validated = tmp_path / "validated"
    write_validated(spark, validated, NIGHTS)
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    common = job_args(validated, window_days=3, min_seq_len=2, user_buckets=10, shuffle_partitions=1,
                      hash_key_env="TEST_HASH_KEY", bot_max_events_per_minute=10)
    nightly = tmp_path / "nightly"
    build_features.main(["--ds", "2026-11-26", "--features-root", str(nightly), *common])
    stats = build_features.main(["--ds", "2026-11-27", "--features-root", str(nightly), *common])
    # x1's replay and x2 are late and allowed (the replay is then dropped as a duplicate); x3 is too late
    assert (stats["events_in"], stats["late_events_kept"], stats["late_events_dropped"]) == (16, 2, 1)
    assert (stats["duplicates_dropped"], stats["bot_sessions"], stats["bot_events_excluded"]) == (1, 1, 12)
    assert stats["events_in"] == (stats["late_events_dropped"] + stats["future_events_dropped"]
                                  + stats["duplicates_dropped"] + stats["events_after_dedup"])
    assert stats["events_in_window"] == 3 and stats["partitions_read"] == ["dt=2026-11-27"]
    night = snapshot(spark, nightly / "dt=2026-11-27")
    idx = {r[0]: r[1] for r in night["item_vocab"]}
    [(user_key, _, seq, bought, padded, length)] = night["sequences"]  # u9, the bot, has no sequence
    assert (seq, bought, length) == ([idx["iA"], idx["iB"], idx["iC"]], [idx["iC"]], 3)  # late iB in its place
    assert padded == [0] * 49 + seq
    assert sum(1 for row in night["events"] if row[-1]) == 12  # bot events are kept, flagged
    scratch = tmp_path / "scratch"  # the same night with nothing to reuse: same features
    fresh = build_features.main(["--ds", "2026-11-27", "--features-root", str(scratch), *common])
    assert fresh["partitions_read"] == ["dt=2026-11-26", "dt=2026-11-27"]
    again = snapshot(spark, scratch / "dt=2026-11-27")
    for output in ("sequences", "item_popularity_windows", "user_rfm", "campaign_performance", "campaign_items",
                   "events"):
        assert again[output] == night[output], output


def test_the_runs_overrides_reach_the_job_and_its_stats_record_them(spark, tmp_path, monkeypatch):
    build_features = load_job()
    validated = tmp_path / "validated"
    write_validated(spark, validated, DAYS)
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    settings = {"window_days": 3, "min_seq_len": 1, "user_buckets": 10, "shuffle_partitions": 1,
                "hash_key_env": "TEST_HASH_KEY"}
    wide = build_features.main(["--ds", "2026-11-27", "--features-root", str(tmp_path / "wide"),
                                *job_args(validated, **settings)])
    narrow = build_features.main(["--ds", "2026-11-27", "--features-root", str(tmp_path / "narrow"),
                                  *job_args(validated, **settings, max_seq_len=1)])
    assert (wide["params"]["max_seq_len"], narrow["params"]["max_seq_len"]) == (50, 1)
    assert narrow["params"]["window_days"] == 3 and "hash_key_env" not in narrow["params"]
    lengths = {name: max(len(row[2]) for row in snapshot(spark, tmp_path / name / "dt=2026-11-27")["sequences"])
               for name in ("wide", "narrow")}
    assert lengths == {"wide": 4, "narrow": 3}  # u1's four items, cut to max_seq_len + 2 held out
    with pytest.raises(SystemExit, match=r"run params: key 'features.window_days'.*greater than or equal to 1"):
        build_features.main(["--ds", "2026-11-27", *job_args(validated, **{**settings, "window_days": 0})])
