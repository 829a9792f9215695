"""Erasure and suppression on a tiny hand-made lake: real validation (GX), real Parquet, the real files.

Three customers: Ada (two days of events, the first day's session began anonymously as anon-77), Bob
(who must keep everything), Quin (only in the quarantine: an unknown event type), and an id nobody
has. Every store Ada is in gets something of hers: raw lines, validated rows, quarantine rows,
features (with Spark's .crc beside them), outputs, the JSON Lines exports, a log, a report.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.config import ConfigError, load_config
from pipelines.lake import PART_FILE, partition_path
from pipelines.privacy.erasure import erase_pending
from pipelines.privacy.requests import (
    ErasureRequest,
    accept_requests,
    latest_statuses,
    pending_requests,
    submit_request,
)
from pipelines.privacy.retention import apply_retention, sweep_suppressed
from pipelines.privacy.status import erasure_status, format_status
from pipelines.publishing.customers import user_key_of
from pipelines.suppression import read_suppressed
from pipelines.validation.raw_day import validate_raw_day
from tests.privacy.scan import scan_for

D1, D2 = "2026-11-26", "2026-11-27"
KEY = b"test-only-hmac-key"  # tests/conftest.py sets PIPELINE_USER_HASH_KEY to it
ADA_ID, ADA_COOKIE, BOB_ID, QUIN_ID = "C-ada-4711", "anon-ada-cookie-77", "C-bob-0042", "C-quin-0815"
ADA = {ADA_ID, ADA_COOKIE, "ada@example.com", "10.9.9.1"}
QUIN = {QUIN_ID, "quin@example.com", "10.9.9.3"}


def _event(number: int, day: str, user: str, session: str, email: str | None, ip: str, **fields) -> dict:
    return {"event_id": f"{day}-e{number}", "event_time": f"{day}T10:{number % 60:02d}:00.000Z", "user_id": user,
            "session_id": session, "event_type": "product_view", "item_id": f"i{number % 5}", "category": "books",
            "price": 9.5, "campaign": None, "utm_source": None, "device": "mobile", "search_query": None,
            "email": email, "ip_address": ip, "user_agent": "Mozilla/5.0", **fields}


def _raw_day(day: str) -> list[dict]:
    events = [_event(n, day, BOB_ID, f"s-bob-{day}", "bob@example.com", "10.9.9.2") for n in range(20)]
    events += [_event(20 + n, day, ADA_ID, f"s-ada-{day}", "ada@example.com", "10.9.9.1") for n in range(6)]
    if day == D1:  # Ada browsed before logging in, in the same session
        events += [_event(30 + n, day, ADA_COOKIE, f"s-ada-{day}", None, "10.9.9.1") for n in range(3)]
        events += [_event(40, day, QUIN_ID, "s-quin", "quin@example.com", "10.9.9.3", event_type="teleport")]
    return events


def _config(tmp_path, **sections):
    paths = {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake"), "gx_dir": str(tmp_path / "gx"),
             "mlflow_dir": str(tmp_path / "mlflow"), "reports_dir": str(tmp_path / "reports")}
    return load_config({"paths": paths, "checks": {"min_history_days": 99}, **sections})


def _land(config, day: str, events: list[dict]) -> None:
    folder = partition_path(config.layout.raw_events, day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events-00000.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _write_derived(config) -> None:
    """What the feature job, scoring and publishing would have written for D2 (by user_key / customer id)."""
    layout = config.layout
    keys = {user: user_key_of(user, KEY) for user in (ADA_ID, ADA_COOKIE, BOB_ID)}
    sequences = partition_path(layout.features, D2) / lake.SEQUENCES
    sequences.mkdir(parents=True)
    pq.write_table(pa.table({C.USER_KEY: list(keys.values()), C.ITEM_SEQ: [[1, 2], [3], [2, 4]]}),
                   sequences / "part-00000-x.snappy.parquet")
    (sequences / ".part-00000-x.snappy.parquet.crc").write_bytes(b"crc")
    vocab = partition_path(layout.features, D2) / lake.ITEM_VOCAB
    vocab.mkdir()
    pq.write_table(pa.table({C.ITEM_ID: ["i1"], C.ITEM_IDX: [1]}), vocab / "part-00000-y.snappy.parquet")
    (partition_path(layout.features, D2) / lake.FEATURE_STATS).write_text('{"rows": 3}')
    recommendations = partition_path(layout.recommendations, D2)
    recommendations.mkdir(parents=True)
    pq.write_table(pa.table({C.USER_KEY: [keys[ADA_ID], keys[BOB_ID]], C.ITEM_ID: ["i1", "i2"]}),
                   recommendations / PART_FILE)
    exports = partition_path(layout.activation_exports, D2)
    exports.mkdir(parents=True)
    (exports / "recommendations.jsonl").write_text(
        json.dumps({"input": {"userId": ADA_ID}, "output": {"recommendedItems": ["i1"]}}) + "\n"
        + json.dumps({"input": {"userId": BOB_ID}, "output": {"recommendedItems": ["i2"]}}) + "\n")
    (exports / "audiences.jsonl").write_text(
        json.dumps({"input": {"campaign": "bf"}, "output": {"usersList": [BOB_ID, ADA_ID], "scores": [0.9, 0.8]}}) + "\n")
    layout.logs_dir.mkdir(parents=True)
    (layout.logs_dir / "run.log").write_text(f"served sample: {ADA_ID}: i1 i2. {BOB_ID}: i2\nlogin ada@example.com from 10.9.9.1.\n")


@pytest.fixture(scope="module")
def validated_template(tmp_path_factory):
    """The lake validated once (real GX, a few seconds a day); each test erases from its own copy."""
    root = tmp_path_factory.mktemp("people")
    config = _config(root)
    for day in (D1, D2):
        _land(config, day, _raw_day(day))
        validate_raw_day(config, day)
    _write_derived(config)
    return root


@pytest.fixture
def lake_with_people(validated_template, tmp_path):
    shutil.copytree(validated_template, tmp_path, dirs_exist_ok=True)
    return _config(tmp_path)


def _bob_rows(config) -> int:
    return sum(pq.read_table(partition_path(config.layout.validated_events, day)).column(C.USER_ID)
               .to_pylist().count(BOB_ID) for day in (D1, D2))


def test_erasure_removes_a_person_from_every_store_and_leaves_the_others(lake_with_people, tmp_path):
    config = lake_with_people
    keys = {user_key_of(user, KEY) for user in (ADA_ID, ADA_COOKIE, QUIN_ID)}
    before = scan_for(tmp_path, ADA | QUIN | keys)
    stores = ("lake/raw/events", "lake/raw/validated", "lake/quarantine/events", "lake/features",
              "lake/outputs/recommendations", "lake/activation/exports", "logs/run.log")
    assert all(any(path.startswith(store) for path in before) for store in stores), before
    bob, raw_lines = _bob_rows(config), (partition_path(config.layout.raw_events, D1) / "events-00000.jsonl")
    lines_before = raw_lines.read_text().count("\n")

    for customer in (ADA_ID, QUIN_ID, "C-nobody-404"):
        submit_request(config, customer, "erase", "dpo@shop.example", "ticket")
    accepted = accept_requests(config)
    summary = erase_pending(config, target=None)

    assert accepted["accepted"] == 3 and summary["requests"] == 3
    assert scan_for(tmp_path, ADA | QUIN | keys) == Counter(), "something of Ada or Quin is left"
    assert _bob_rows(config) == bob and raw_lines.read_text().count("\n") == lines_before  # blanked, not removed
    statuses = {entry["status"] for entry in latest_statuses(config.layout).values()}
    assert statuses == {"done", "not_found"} and not pending_requests(config.layout)
    ada = next(o for o in summary["outcomes"].values() if o["identifiers"]["user_id"] == 2)
    assert ada["raw_events"] == 6 + 6 + 3 and ada["validated"] == 15 and ada["features"] == 2
    assert ada["outputs"] == 1 + 1 + 1 and ada["text"] >= 3  # recommendations, export line, audience member
    audience = json.loads((partition_path(config.layout.activation_exports, D2) / "audiences.jsonl").read_text())
    assert audience["output"] == {"usersList": [BOB_ID], "scores": [0.9]}
    assert not (partition_path(config.layout.features, D2) / lake.SEQUENCES / ".part-00000-x.snappy.parquet.crc").exists()
    counts = json.loads((partition_path(config.layout.validated_events, D1) / lake.COUNTS_FILE).read_text())
    assert counts["rows_erased"] == 9 and counts["rows_in"] == counts["rows_accepted"] + counts["rows_quarantined"]
    assert erase_pending(config, target=None)["requests"] == 0  # nothing pending: a rerun changes nothing


def test_a_suppressed_persons_new_events_are_dropped_at_ingest_and_swept_from_raw(lake_with_people, tmp_path):
    config = lake_with_people
    submit_request(config, ADA_ID, "erase", "dpo", "ticket")
    accept_requests(config)
    erase_pending(config, target=None)
    _land(config, D2, _raw_day(D2))  # the collector re-sends the day, Ada's events included

    record = validate_raw_day(config, D2)
    assert record["rows_suppressed"] == 6 and record["rows_quarantined"] == 0
    assert ADA_ID not in pq.read_table(partition_path(config.layout.validated_events, D2)).column(C.USER_ID).to_pylist()
    assert sweep_suppressed(config) == {D2: 6}
    assert scan_for(config.layout.lake_dir, {ADA_ID, "ada@example.com"}) == Counter()


def test_suppress_keeps_the_raw_zone_for_a_legal_hold_but_stops_processing(lake_with_people):
    config = lake_with_people
    submit_request(config, ADA_ID, "suppress", "legal", "hold: dispute 12")
    accept_requests(config)
    outcome = next(iter(erase_pending(config, target=None)["outcomes"].values()))
    assert "raw_events" not in outcome and "quarantine" not in outcome and outcome["validated"] == 15
    assert ADA_ID in (partition_path(config.layout.raw_events, D1) / "events-00000.jsonl").read_text()
    assert scan_for(config.layout.features, {user_key_of(ADA_ID, KEY)}) == Counter()


def test_intake_refuses_bad_lines_by_number_and_takes_the_rest(lake_with_people):
    config = lake_with_people
    drop = config.layout.privacy_requests / "helpdesk.jsonl"
    drop.parent.mkdir(parents=True)
    drop.write_text(json.dumps({"customer_id": BOB_ID, "kind": "erase"}) + "\nnot json\n"
                    + json.dumps({"customer_id": "C-9", "kind": "forget"}) + "\n"
                    + json.dumps({"customer_id": ADA_ID, "requested_at": "yesterday"}) + "\n")

    result = accept_requests(config)

    assert result["accepted"] == 1 and result["refused"] == 3 and not drop.exists()
    assert [line.split(":")[0] for line in result["refused_lines"]] == [
        "helpdesk.jsonl line 2", "helpdesk.jsonl line 3", "helpdesk.jsonl line 4"]
    assert "forget" in result["refused_lines"][1] and "ISO-8601" in result["refused_lines"][2]
    audit = config.layout.privacy_audit.read_text()
    assert BOB_ID not in audit and len(read_suppressed(config.layout.suppression_list)) == 1
    status = erasure_status(config)
    assert status["open"] == result["request_ids"] and status["refused_lines"] == 3
    assert "1 requests, 1 open, 0 overdue" in format_status(status)


def test_retention_deletes_raw_days_past_the_limit_and_config_guards_the_window(tmp_path):
    config = _config(tmp_path, features={"window_days": 3}, privacy={"raw_retention_days": 5})
    for day in ("2026-11-01", "2026-11-20", D2):
        _land(config, day, _raw_day(day)[:2])
    result = apply_retention(config, D2)
    assert result == {"oldest_kept": "2026-11-22", "deleted_days": {"raw_events": 2}}
    assert sorted(lake.day_folders(config.layout.raw_events)) == [D2]
    with pytest.raises(ConfigError, match="raw_retention_days=30 would delete raw days the feature job"):
        _config(tmp_path, privacy={"raw_retention_days": 30})


def test_an_erasure_waits_for_a_writer_of_the_same_day_and_a_killed_one_is_finished_by_the_next(lake_with_people,
                                                                                                 tmp_path):
    import os
    import subprocess
    import sys
    import threading
    import time

    from pipelines.io import partition_lock

    config = lake_with_people
    submit_request(config, ADA_ID, "erase", "dpo", "ticket")
    accept_requests(config)
    env = {**os.environ, "PIPELINE_FAULT_POINT": "partition-staged:2",
           **{f"PIPELINE__PATHS__{key.upper()}": value for key, value in config.paths.model_dump().items()},
           "PIPELINE__CHECKS__MIN_HISTORY_DAYS": "99"}
    killed = subprocess.run([sys.executable, "-c", "from pipelines.config import load_config; "
                             "from pipelines.privacy.erasure import erase_pending; erase_pending(load_config(), None)"],
                            env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after its first partition was swapped in
    assert [request.customer_id for request in pending_requests(config.layout)] == [ADA_ID]

    day = partition_path(config.layout.validated_events, D2)
    held = threading.Event()

    def nightly_writer():
        with partition_lock(day):
            held.set()
            time.sleep(3)

    writer = threading.Thread(target=nightly_writer)
    writer.start()
    held.wait()
    began = time.monotonic()
    summary = erase_pending(config, target=None)
    writer.join()
    assert time.monotonic() - began >= 2.5  # it waited for the writer instead of failing or mixing
    assert summary["done"] == 1 and not pending_requests(config.layout)
    assert scan_for(tmp_path, ADA) == Counter()


@pytest.mark.spark
def test_a_table_spark_wrote_reads_back_in_spark_after_an_erasure(spark, tmp_path):
    import datetime as dt

    from pipelines.privacy.rewrite import Matcher, rewrite_partition
    from pipelines.privacy.subjects import Subject

    day = tmp_path / "features" / f"dt={D2}"
    rows = [(user_key_of(user, KEY), dt.datetime(2026, 11, 27, 10, n), n) for n, user in enumerate([ADA_ID, BOB_ID] * 3)]
    spark.createDataFrame(rows, f"{C.USER_KEY} string, {C.EVENT_TIME} timestamp, n int").repartition(3) \
        .write.parquet(str(day / lake.CLEAN_EVENTS))
    request = ErasureRequest("e-1", ADA_ID, "erase", "2026-11-28T00:00:00+00:00", "dpo", "ticket")
    ada = Subject(request, user_ids={ADA_ID}, user_keys={user_key_of(ADA_ID, KEY)})

    removed = rewrite_partition(day, Matcher([ada]))

    left = spark.read.parquet(str(day / lake.CLEAN_EVENTS))
    assert removed == {"e-1": 3} and left.count() == 3
    assert {row[C.USER_KEY] for row in left.collect()} == {user_key_of(BOB_ID, KEY)}
    assert dict(left.dtypes)[C.EVENT_TIME] == "timestamp"
