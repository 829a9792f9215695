"""Publishing into a real PostgreSQL 15 (the session's embedded serving database).

A tiny lake: validated raw days that name the customers (one anonymous visitor, one id too long for
the column, ids with quotes, commas and backslashes), and the day's recommendations and audiences by
user key, as score_users writes them.
"""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines.config import load_config
from pipelines.lake import PART_FILE, partition_path
from pipelines.publishing import store
from pipelines.publishing.connection import ServingDatabaseError, connect
from pipelines.publishing.customers import user_key_of
from pipelines.publishing.publish import publish_outputs

pytestmark = pytest.mark.postgres
DS, EARLIER = "2026-11-27", "2026-11-26"
KEY = b"test-only-hmac-key"
CUSTOMERS = ["C001", 'C"002,quoted', "C003\\back'slash", "anon-77", "L" * 200]


def _config(tmp_path, schema):
    paths = {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake"), "gx_dir": str(tmp_path / "gx"),
             "mlflow_dir": str(tmp_path / "mlflow"), "reports_dir": str(tmp_path / "reports")}
    return load_config({"paths": paths, "publishing": {"schema_name": schema, "max_customer_id_length": 64}})


def _land(config, ds, score_shift=0.0):
    validated = partition_path(config.layout.validated_events, ds)
    validated.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({C.USER_ID: CUSTOMERS + [None]}), validated / PART_FILE)
    keys = [user_key_of(c, KEY) for c in CUSTOMERS]
    recs = {C.USER_KEY: [], C.RANK: [], C.ITEM_IDX: [], C.ITEM_ID: [], C.SCORE: [], C.MODEL_VERSION: []}
    for n, key in enumerate(keys):
        for rank in (1, 2, 3):
            recs[C.USER_KEY].append(key)
            recs[C.RANK].append(rank)
            recs[C.ITEM_IDX].append(n + rank)
            recs[C.ITEM_ID].append(f"I{n + rank:03d}")
            recs[C.SCORE].append(10.0 - rank + (score_shift if n == 0 and rank == 1 else 0.0))
            recs[C.MODEL_VERSION].append("3")
    for root, table in ((config.layout.recommendations, pa.table(recs)), (config.layout.audiences, pa.table({
            C.CAMPAIGN: ["spring"] * 3, C.RANK: [1, 2, 3], C.USER_KEY: [keys[0], keys[3], keys[1]],
            "affinity": pa.array([0.5, 0.4, 0.3], pa.float32()), C.MODEL_VERSION: ["3"] * 3}))):
        folder = partition_path(root, ds)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / PART_FILE)


def _query(target, sql, *args):
    connection = connect(target)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.fixture
def world(tmp_path, serving_db, request):
    schema = f"t_{request.node.name[5:40].lower()}".replace("-", "_")
    config = _config(tmp_path, schema)
    _land(config, DS)
    return config, serving_db, schema


def test_a_day_is_published_by_customer_id_and_the_counts_reconcile(world):
    config, target, schema = world
    summary = publish_outputs(config, DS, target)
    recs = summary["recommendations"]
    assert recs == {"read": 15, "published": 9, "anonymous": 3, "customer_id_too_long": 3, "suppressed": 0,
                    "unmapped": 0}
    assert recs["read"] == (recs["published"] + recs["anonymous"] + recs["customer_id_too_long"]
                            + recs["suppressed"] + recs["unmapped"])
    rows = _query(target, f"SELECT customer_id, rank, item_id FROM {schema}.recommendations_current "
                          "ORDER BY customer_id, rank")
    assert sorted({r[0] for r in rows}) == sorted(CUSTOMERS[:3])  # quotes and commas are data, not syntax
    assert [r[2] for r in rows if r[0] == "C001"] == ["I001", "I002", "I003"]
    payload = _query(target, f"SELECT payload FROM {schema}.customer_recommendations WHERE external_id = %s",
                     "C003\\back'slash")[0][0]
    assert payload["recommended_items"] == ["I003", "I004", "I005"] and payload["model_version"] == "3"
    audience = _query(target, f"SELECT customer_id FROM {schema}.audiences_current ORDER BY rank")
    assert [a[0] for a in audience] == ["C001", 'C"002,quoted']  # the anonymous member is not published
    quarantine = pq.read_table(partition_path(config.layout.publishing_quarantine, DS) / PART_FILE)
    assert quarantine.column("customer_id").to_pylist() == ["L" * 200]
    assert "customer_id_too_long" in quarantine.column(C.QUARANTINE_REASON)[0].as_py()
    lines = (partition_path(config.layout.activation_exports, DS) / "recommendations.jsonl").read_text().splitlines()
    by_customer = {line["input"]["userId"]: line["output"] for line in map(json.loads, lines)}
    assert by_customer["C001"]["recommendedItems"] == ["I001", "I002", "I003"]
    assert len(lines) == 3
    record = json.loads(config.layout.publication_record(DS).read_text())
    assert record["database"]["tables"]["recommendations"]["inserted"] == 9
    assert "C001" not in config.layout.publication_record(DS).read_text()  # counts only, no ids


def test_a_rerun_changes_nothing_and_a_changed_score_touches_only_its_row(world):
    config, target, schema = world
    publish_outputs(config, DS, target)
    stamps = _query(target, f"SELECT customer_id, rank, updated_at FROM {schema}.recommendations ORDER BY 1, 2")
    again = publish_outputs(config, DS, target)
    assert again["database"]["tables"]["recommendations"] == {"inserted": 0, "updated": 0, "deleted": 0,
                                                              "unchanged": 9}
    assert again["database"]["tables"]["customer_recommendations"]["unchanged"] == 3
    assert _query(target, f"SELECT customer_id, rank, updated_at FROM {schema}.recommendations ORDER BY 1, 2") == stamps
    _land(config, DS, score_shift=0.5)
    changed = publish_outputs(config, DS, target)["database"]["tables"]
    assert changed["recommendations"]["updated"] == 1 and changed["recommendations"]["unchanged"] == 8
    assert changed["customer_recommendations"]["updated"] == 1


def test_an_earlier_day_published_later_leaves_the_current_day_serving(world):
    config, target, schema = world
    publish_outputs(config, DS, target)
    payloads = _query(target, f"SELECT external_id, payload, updated_at FROM {schema}.customer_recommendations")
    _land(config, EARLIER, score_shift=3.0)
    summary = publish_outputs(config, EARLIER, target)
    assert summary["database"]["later_day_published"] == DS
    assert {r[0] for r in _query(target, f"SELECT DISTINCT ds::text FROM {schema}.recommendations_current")} == {DS}
    assert _query(target, f"SELECT external_id, payload, updated_at FROM {schema}.customer_recommendations") == payloads
    assert _query(target, f"SELECT count(*) FROM {schema}.recommendations WHERE ds = %s", EARLIER) == [(9,)]


def test_a_failed_publish_rolls_back_and_the_previous_day_keeps_serving(world):
    config, target, schema = world
    publish_outputs(config, DS, target)
    before = _query(target, f"SELECT * FROM {schema}.recommendations_current ORDER BY customer_id, rank")
    broken = pa.table({"customer_id": ["C001"], "rank": pa.array([1], pa.int32()), "item_id": [None],
                       "score": pa.array([1.0], pa.float32()), "model_version": ["4"]})
    empty = pa.table({"campaign": pa.array([], pa.string()), "customer_id": pa.array([], pa.string()),
                      "rank": pa.array([], pa.int32()), "affinity": pa.array([], pa.float32()),
                      "model_version": pa.array([], pa.string())})
    connection = connect(target)
    try:
        with pytest.raises(Exception, match="null value"):
            store.publish_day(connection, schema, 64, "2026-11-28", broken, empty, "4")
    finally:
        connection.close()
    assert _query(target, f"SELECT * FROM {schema}.recommendations_current ORDER BY customer_id, rank") == before
    assert _query(target, f"SELECT max(ds)::text FROM {schema}.publications") == [(DS,)]


def test_an_unreachable_database_or_a_wrong_password_says_where_and_what_to_do(world):
    config, target, _ = world
    from tests.conftest import free_port

    closed = dataclasses.replace(target, port=free_port())
    with pytest.raises(ServingDatabaseError) as unreachable:
        publish_outputs(config, DS, closed)
    assert f"127.0.0.1:{closed.port}/serving" in str(unreachable.value)
    assert "previous day keeps serving" in str(unreachable.value)
    with pytest.raises(ServingDatabaseError, match="password"):
        publish_outputs(config, DS, dataclasses.replace(target, password="wrong"))
    assert not config.layout.publication_record(DS).exists()  # nothing recorded as published


def test_ids_with_newlines_tabs_and_quotes_are_copied_as_data(world):
    _, target, schema = world
    hostile = ["a\nb", "tab\there", "semi;colon", "'; DROP TABLE x; --", '"', "\\N", ""]
    recs = pa.table({"customer_id": hostile, "rank": pa.array([1] * len(hostile), pa.int32()),
                     "item_id": ["I1"] * len(hostile), "score": pa.array([1.0] * len(hostile), pa.float32()),
                     "model_version": ["9"] * len(hostile)})
    empty = pa.table({"campaign": pa.array([], pa.string()), "customer_id": pa.array([], pa.string()),
                      "rank": pa.array([], pa.int32()), "affinity": pa.array([], pa.float32()),
                      "model_version": pa.array([], pa.string())})
    connection = connect(target)
    try:
        store.publish_day(connection, schema, 64, DS, recs, empty, "9")
    finally:
        connection.close()
    stored = _query(target, f"SELECT customer_id FROM {schema}.recommendations WHERE ds = %s", DS)
    assert sorted(r[0] for r in stored) == sorted(hostile)  # "\\N" and "" stay text, never NULL
