"""The serving tables in PostgreSQL, and the one transaction that publishes a day into them.

Tables (schema ``publishing.schema_name``, ``marketing`` by default), all keyed by customer id:

    recommendations            (ds, customer_id, rank) PK, item_id, score, model_version, updated_at;
                               index on customer_id. Every published day.
    recommendations_current    view: the latest published day only, so an app server or a reverse-ETL
                               sync (Hightouch, Census) reads one consistent day, never a mix.
    customer_recommendations   external_id PK, payload (jsonb), updated_at: one row per customer of the
                               latest day, the shape Braze's Cloud Data Ingestion and profile attributes
                               take ({"recommended_items": [...], "scores": [...], "model_version": ...}).
    audiences                  (ds, campaign, customer_id) PK, rank, affinity, model_version, updated_at.
    audiences_current          view: the latest published day's audiences.
    publications               ds PK, model_version, row counts, published_at, updated_at.

A day is published in one transaction: the rows are ``COPY``-ed (never string-built SQL) into temporary
tables, then upserted, and the day's rows no longer there are deleted. A row whose content did not
change keeps its ``updated_at``, so a rerun of the same date changes nothing a sync would see. A
failure rolls everything back and the previous day keeps serving. Publishes take a transaction-level
advisory lock, so two publishing tasks never interleave. ``customer_recommendations`` follows the
latest day only: publishing an earlier day (a backfill) leaves it as the later day wrote it.

Who may read what: the marketing tools' sync role reads the two views and ``customer_recommendations``
(``GRANT SELECT``); ``recommendations`` and ``audiences`` keep every day for the data team; only the
pipeline's role writes. The tables hold customer ids: the serving database is inside the same trust
boundary as the raw zone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

LOCK_KEY = 0x7075626C6973  # pg_advisory_xact_lock key of publishing ("publis")

RECOMMENDATION_COLUMNS = ("customer_id", "rank", "item_id", "score", "model_version")
AUDIENCE_COLUMNS = ("campaign", "customer_id", "rank", "affinity", "model_version")


@dataclass(frozen=True)
class PublishCounts:
    inserted: int
    updated: int
    deleted: int
    unchanged: int

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted,
                "unchanged": self.unchanged}


def schema_sql(schema: str, max_customer_id_length: int) -> list[str]:
    """The DDL, idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE VIEW``)."""
    customer = f"varchar({max_customer_id_length})"
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"""CREATE TABLE IF NOT EXISTS {schema}.publications (
            ds date PRIMARY KEY, model_version text NOT NULL, customers integer NOT NULL,
            recommendation_rows integer NOT NULL, audience_rows integer NOT NULL,
            published_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.recommendations (
            ds date NOT NULL, customer_id {customer} NOT NULL, rank smallint NOT NULL, item_id text NOT NULL,
            score real NOT NULL, model_version text NOT NULL, updated_at timestamptz NOT NULL,
            PRIMARY KEY (ds, customer_id, rank))""",
        f"CREATE INDEX IF NOT EXISTS recommendations_customer_id ON {schema}.recommendations (customer_id)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.audiences (
            ds date NOT NULL, campaign text NOT NULL, customer_id {customer} NOT NULL, rank integer NOT NULL,
            affinity real NOT NULL, model_version text NOT NULL, updated_at timestamptz NOT NULL,
            PRIMARY KEY (ds, campaign, customer_id))""",
        f"CREATE INDEX IF NOT EXISTS audiences_customer_id ON {schema}.audiences (customer_id)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.customer_recommendations (
            external_id {customer} PRIMARY KEY, payload jsonb NOT NULL, updated_at timestamptz NOT NULL)""",
        f"""CREATE OR REPLACE VIEW {schema}.recommendations_current AS
            SELECT r.* FROM {schema}.recommendations r
            WHERE r.ds = (SELECT max(ds) FROM {schema}.publications)""",
        f"""CREATE OR REPLACE VIEW {schema}.audiences_current AS
            SELECT a.* FROM {schema}.audiences a
            WHERE a.ds = (SELECT max(ds) FROM {schema}.publications)""",
    ]


def publish_day(connection, schema: str, max_customer_id_length: int, ds: str, recommendations: pa.Table,
                audiences: pa.Table, model_version: str) -> dict[str, Any]:
    """Publish one day in one transaction (see the module docstring); the counts per table.

    ``recommendations``: RECOMMENDATION_COLUMNS; ``audiences``: AUDIENCE_COLUMNS; customer ids already
    checked against the column's length.
    """
    with connection:  # commits at the end, rolls back on any error
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            for statement in schema_sql(schema, max_customer_id_length):
                cursor.execute(statement)
            cursor.execute(f"SELECT max(ds)::text FROM {schema}.publications WHERE ds > %s", (ds,))
            later_day = cursor.fetchone()[0]
            _copy(cursor, "stage_recommendations", f"{schema}.recommendations", recommendations,
                  RECOMMENDATION_COLUMNS)
            _copy(cursor, "stage_audiences", f"{schema}.audiences", audiences, AUDIENCE_COLUMNS)
            counts = {
                "recommendations": _upsert(cursor, schema, "recommendations", "stage_recommendations", ds,
                                           key=("customer_id", "rank"),
                                           values=("item_id", "score", "model_version")),
                "audiences": _upsert(cursor, schema, "audiences", "stage_audiences", ds,
                                     key=("campaign", "customer_id"), values=("rank", "affinity", "model_version")),
            }
            if later_day is None:
                counts["customer_recommendations"] = _customer_payloads(cursor, schema)
            cursor.execute(
                f"""INSERT INTO {schema}.publications AS p
                    (ds, model_version, customers, recommendation_rows, audience_rows, published_at, updated_at)
                    SELECT %s, %s, (SELECT count(DISTINCT customer_id) FROM stage_recommendations),
                           (SELECT count(*) FROM stage_recommendations), (SELECT count(*) FROM stage_audiences),
                           now(), now()
                    ON CONFLICT (ds) DO UPDATE SET model_version = EXCLUDED.model_version,
                        customers = EXCLUDED.customers, recommendation_rows = EXCLUDED.recommendation_rows,
                        audience_rows = EXCLUDED.audience_rows, updated_at = EXCLUDED.updated_at
                    WHERE (p.model_version, p.customers, p.recommendation_rows, p.audience_rows)
                          IS DISTINCT FROM (EXCLUDED.model_version, EXCLUDED.customers,
                                            EXCLUDED.recommendation_rows, EXCLUDED.audience_rows)""",
                (ds, model_version))
    return {"tables": {name: c.as_dict() for name, c in counts.items()},
            "current_day_unchanged": later_day is not None, "later_day_published": later_day}


def _copy(cursor, stage: str, like: str, table: pa.Table, columns: tuple[str, ...]) -> None:
    """``COPY`` the rows into a temporary table shaped like ``like`` (CSV: quotes, commas, newlines are data)."""
    cursor.execute(f"CREATE TEMP TABLE {stage} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP")
    cursor.execute(f"ALTER TABLE {stage} DROP COLUMN ds, DROP COLUMN updated_at")
    buffer = io.BytesIO()
    pacsv.write_csv(table.select(list(columns)), buffer,
                    pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    cursor.copy_expert(f"COPY {stage} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)


def _upsert(cursor, schema: str, table: str, stage: str, ds: str, key: tuple[str, ...],
            values: tuple[str, ...]) -> PublishCounts:
    """Insert new rows, update changed ones (new ``updated_at``), keep unchanged ones, delete the gone."""
    columns = (*key, *values)
    changed = ", ".join(f"{column} = EXCLUDED.{column}" for column in values)
    cursor.execute(
        f"""WITH written AS (
                INSERT INTO {schema}.{table} AS t (ds, {', '.join(columns)}, updated_at)
                SELECT %s, {', '.join(columns)}, now() FROM {stage}
                ON CONFLICT (ds, {', '.join(key)}) DO UPDATE SET {changed}, updated_at = EXCLUDED.updated_at
                WHERE ({', '.join(f't.{c}' for c in values)}) IS DISTINCT FROM
                      ({', '.join(f'EXCLUDED.{c}' for c in values)})
                RETURNING (xmax = 0) AS inserted)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written""",
        (ds,))
    inserted, updated = cursor.fetchone()
    match = " AND ".join(f"s.{column} = t.{column}" for column in key)
    cursor.execute(f"""DELETE FROM {schema}.{table} t WHERE t.ds = %s
                       AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})""", (ds,))
    deleted = cursor.rowcount
    cursor.execute(f"SELECT count(*) FROM {stage}")
    total = cursor.fetchone()[0]
    return PublishCounts(inserted, updated, deleted, total - inserted - updated)


def _customer_payloads(cursor, schema: str) -> PublishCounts:
    """One row per customer of the staged (latest) day, its top items in rank order."""
    cursor.execute(
        """CREATE TEMP TABLE stage_payloads ON COMMIT DROP AS
           SELECT customer_id AS external_id,
                  jsonb_build_object('recommended_items', jsonb_agg(item_id ORDER BY rank),
                                     'scores', jsonb_agg(score ORDER BY rank),
                                     'model_version', min(model_version)) AS payload
           FROM stage_recommendations GROUP BY customer_id""")
    cursor.execute(
        f"""WITH written AS (
                INSERT INTO {schema}.customer_recommendations AS c (external_id, payload, updated_at)
                SELECT external_id, payload, now() FROM stage_payloads
                ON CONFLICT (external_id) DO UPDATE SET payload = EXCLUDED.payload, updated_at = EXCLUDED.updated_at
                WHERE c.payload IS DISTINCT FROM EXCLUDED.payload
                RETURNING (xmax = 0) AS inserted)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written""")
    inserted, updated = cursor.fetchone()
    cursor.execute(f"""DELETE FROM {schema}.customer_recommendations c
                       WHERE NOT EXISTS (SELECT 1 FROM stage_payloads s WHERE s.external_id = c.external_id)""")
    deleted = cursor.rowcount
    cursor.execute("SELECT count(*) FROM stage_payloads")
    total = cursor.fetchone()[0]
    return PublishCounts(inserted, updated, deleted, total - inserted - updated)


def read_current(connection, schema: str, limit: int = 3) -> list[tuple]:
    """A few customers' current top items, as a marketer's query would read them (for the summary)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT ds::text, customer_id, string_agg(item_id, ' ' ORDER BY rank), min(model_version)
                FROM {schema}.recommendations_current
                WHERE customer_id IN (SELECT DISTINCT customer_id FROM {schema}.recommendations_current
                                      ORDER BY customer_id LIMIT %s)
                GROUP BY ds, customer_id ORDER BY customer_id""", (limit,))
        return cursor.fetchall()


ERASABLE_TABLES = {"recommendations": "customer_id", "audiences": "customer_id",
                   "customer_recommendations": "external_id"}


def erase_customers(connection, schema: str, customer_ids: list[str], vacuum_full: bool = True) -> dict[str, int]:
    """Delete every row of ``customer_ids`` from the serving tables (every day); rows deleted per table.

    Runs under the publishing lock, so it never interleaves with a publish. ``vacuum_full`` then
    rewrites the tables that lost rows (``VACUUM FULL``), so the deleted rows leave the data files too,
    not only the visible table. A schema not created yet (nothing published) deletes nothing.
    """
    deleted = dict.fromkeys(ERASABLE_TABLES, 0)
    with connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
            present = {row[0] for row in cursor.fetchall()}
            for table, column in ERASABLE_TABLES.items():
                if table in present and customer_ids:
                    cursor.execute(f"DELETE FROM {schema}.{table} WHERE {column} = ANY(%s)", (list(customer_ids),))
                    deleted[table] = cursor.rowcount
    if vacuum_full and any(deleted.values()):
        autocommit = connection.autocommit
        connection.autocommit = True  # VACUUM cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                for table, count in deleted.items():
                    if count:
                        cursor.execute(f"VACUUM FULL {schema}.{table}")
        finally:
            connection.autocommit = autocommit
    return deleted
