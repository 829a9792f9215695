"""The erasure proof: the nightly DAG, then the privacy_erasure DAG, then a scan of everything for three people.

Real Airflow (``dag.test()``), Spark, Keras, MLflow and PostgreSQL, on the suite's tiny demo (conf/test)
with three customers landed among its shoppers:

* a buyer, with two days of views, carts and purchases (in the features, the recommendations, the
  serving database and the exports);
* a shopper who browsed anonymously (a cookie id) and logged in within the same session;
* a customer found only in the quarantine (every event of theirs has an unknown type).

After the night, ``make erase``-style requests for the three, then the privacy DAG; then every file
under ``var/`` (Parquet read column by column, everything else byte by byte, Airflow's and MLflow's
SQLite databases included) and every row of the serving schema are searched for their ids, emails,
IP addresses and user keys. The next night must drop the buyer's new events at ingest and train and
publish without any of them. Its days come after ``test_nightly``'s, which runs first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.config import REPO_ROOT, load_config
from pipelines.dates import shift
from pipelines.lake import partition_path
from pipelines.publishing.customers import user_key_of
from tests.privacy.scan import scan_for

pytestmark = pytest.mark.e2e
DS1, DS2 = "2026-12-20", "2026-12-21"
KEY = os.environ["PIPELINE_USER_HASH_KEY"].encode()
BUYER = {"C-proof-buyer-31", "buyer31@example.org", "10.250.31.1"}
LOGIN = {"C-proof-login-32", "anon-proof-cookie-32", "login32@example.org", "10.250.32.1"}
QUARANTINED = {"C-proof-quarantine-33", "quarantine33@example.org", "10.250.33.1"}
CUSTOMERS = ("C-proof-buyer-31", "C-proof-login-32", "C-proof-quarantine-33")


def _event(day, n, user, session, email, ip, event_type="product_view", item=None, hour=9):
    event_id = hashlib.sha256(f"{user}/{day}/{n}".encode()).hexdigest()[:16]  # ids never embed the user's
    return {"event_id": f"proof-{event_id}", "event_time": f"{day}T{hour:02d}:{n % 60:02d}:00.000Z",
            "user_id": user, "session_id": session, "event_type": event_type, "item_id": item,
            "category": "proof", "price": 12.5, "campaign": None, "utm_source": None, "device": "desktop",
            "search_query": None, "email": email, "ip_address": ip, "user_agent": "Mozilla/5.0 (proof)"}


def _people_events(day: str, items: list[str]) -> list[dict]:
    buyer = [_event(day, n, "C-proof-buyer-31", f"s-buyer-{day}", "buyer31@example.org", "10.250.31.1",
                    kind, items[n % len(items)])
             for n, kind in enumerate(["product_view"] * 6 + ["add_to_cart", "purchase"])]
    cookie = [_event(day, n, "anon-proof-cookie-32", f"s-login-{day}", None, "10.250.32.1", item=items[n])
              for n in range(3)]
    login = [_event(day, 10 + n, "C-proof-login-32", f"s-login-{day}", "login32@example.org", "10.250.32.1",
                    item=items[3 + n]) for n in range(4)]
    quarantined = [_event(day, n, "C-proof-quarantine-33", "s-q", "quarantine33@example.org", "10.250.33.1",
                          "teleport", items[0]) for n in range(3)]
    return buyer + cookie + login + quarantined


def _item_of(line: str) -> str | None:
    try:
        item = json.loads(line).get("item_id")
    except (ValueError, AttributeError):
        return None
    return item if isinstance(item, str) else None


def _land_people(config, day: str, events=None) -> None:
    folder = partition_path(config.layout.raw_events, day)
    items = sorted({_item_of(line) for line in (folder / "events-00000.jsonl").read_text().splitlines()[:400]} - {None})[:8]
    with (folder / "proof-people.jsonl").open("w") as handle:
        handle.writelines(json.dumps(event) + "\n" for event in (events or _people_events(day, items)))


def _identifiers() -> set[str]:
    ids = BUYER | LOGIN | QUARANTINED
    keys = {user_key_of(user, KEY) for user in ids if "@" not in user and not user[0].isdigit()}
    return ids | keys


def _serving_hits(config) -> Counter:
    """Rows of any table of the serving schema whose text holds one of the identifiers."""
    from pipelines.publishing.connection import connect, target_from_env

    connection = connect(target_from_env(config.publishing.conn_id))
    hits: Counter = Counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                           (config.publishing.schema_name,))
            for (table,) in cursor.fetchall():
                cursor.execute(f"SELECT t::text FROM {config.publishing.schema_name}.{table} t")
                for (row,) in cursor.fetchall():
                    hits[table] += sum(value.lower() in row.lower() for value in _identifiers())
    finally:
        connection.close()
    return +hits


@pytest.fixture(scope="module")
def dags(serving_db):
    from pipelines.local.environment import pipeline_environment, prepare_airflow
    from pipelines.local.runner import land_demo, validate_earlier_days

    config = load_config()
    env = pipeline_environment(config)
    os.environ.update(env)
    prepare_airflow(config, env)
    land_demo(config, DS1)
    for day in (shift(DS1, -1), DS1):
        _land_people(config, day)
    validate_earlier_days(config, DS1)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO_ROOT / "dags"))

    def run(dag_id: str, ds: str):
        logical = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
        return bag.get_dag(dag_id).test(logical_date=logical)

    return config, run


def test_an_erasure_request_reaches_every_store_and_the_audit_says_so(dags):
    from mlflow import MlflowClient

    from pipelines.privacy.requests import submit_request
    from pipelines.privacy.status import erasure_status
    from pipelines.registry.erased import ERASED_TAG

    config, run = dags
    assert str(run(config.airflow.dag_id, DS1).state) == "success"
    var = config.layout.var_dir
    before, serving_before = scan_for(var, _identifiers()), _serving_hits(config)
    assert serving_before["recommendations"] > 0 and serving_before["customer_recommendations"] > 0
    assert any(path.startswith("lake/features") for path in before)
    assert any(path.startswith("lake/quarantine") for path in before)
    requests = [submit_request(config, customer, "erase", "dpo@shop.example", "proof test").request_id
                for customer in CUSTOMERS]

    assert str(run("privacy_erasure", DS1).state) == "success"

    assert scan_for(var, _identifiers()) == Counter(), "something of the three is left under var/"
    assert _serving_hits(config) == Counter()
    status = erasure_status(config)
    by_id = {r["request_id"]: r for r in status["requests"]}
    buyer, login, quarantined = (by_id[request_id]["counts"] for request_id in requests)
    assert [by_id[request_id]["status"] for request_id in requests] == ["done"] * 3 and not status["open"]
    assert {"raw_events", "validated", "features", "outputs", "serving", "models"} <= set(buyer)
    assert login["identifiers"]["user_id"] == 2 and login["raw_events"] == 2 * (3 + 4)  # the cookie id was linked
    assert set(quarantined) >= {"raw_events", "quarantine"} and "validated" not in quarantined
    versions = MlflowClient().search_model_versions(f"name = '{config.promotion.registered_model}'")
    assert {v.version for v in versions if v.tags.get("pipeline.feature_version", "").startswith(DS1)} <= \
        {v.version for v in versions if ERASED_TAG in v.tags}
    print(f"scan before: {sum(before.values())} hits in {len(before)} files, serving {dict(serving_before)}; "
          f"after: 0; audit: {[r['counts'] for r in status['requests']]}")


def test_the_next_night_drops_them_at_ingest_and_trains_and_publishes_without_them(dags):
    from mlflow import MlflowClient

    from pipelines.local.runner import land_demo
    from pipelines.registry.erased import ERASED_TAG

    config, run = dags
    land_demo(config, DS2)  # the collector lands the next day (and re-sends the window's days)
    _land_people(config, DS2)  # the buyer comes back

    assert str(run(config.airflow.dag_id, DS2).state) == "success"

    record = json.loads(config.layout.check_record(DS2, lake.RAW_EVENTS_CHECK).read_text())
    assert record["rows_suppressed"] == 8 + 3 + 4 + 3
    features = pq.read_table(partition_path(config.layout.features, DS2) / lake.SEQUENCES)
    assert not set(features.column(C.USER_KEY).to_pylist()) & _identifiers()
    assert str(run("privacy_erasure", DS2).state) == "success"  # sweeps the raw lines validation refused
    assert scan_for(config.layout.var_dir, _identifiers()) == Counter()
    assert _serving_hits(config) == Counter()
    versions = MlflowClient().search_model_versions(f"name = '{config.promotion.registered_model}'")
    assert not [v.version for v in versions
                if v.tags.get("pipeline.feature_version", "").startswith(DS2) and ERASED_TAG in v.tags]
