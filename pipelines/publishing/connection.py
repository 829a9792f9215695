"""Where the serving database is: an Airflow connection, read the way Airflow reads it.

The publish task resolves ``publishing.conn_id`` through Airflow (a connection from the UI, a secrets
backend or ``AIRFLOW_CONN_<ID>``) and hands the fields here; benchmarks and the command line read the
same ``AIRFLOW_CONN_<ID>`` variable (JSON or URI) without Airflow. ``connect`` turns a failure into an
error that names the host, the database and what to do.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any


class ServingDatabaseError(RuntimeError):
    """The serving database cannot be reached, refuses the credentials, or its connection is not set."""


@dataclass(frozen=True)
class ServingTarget:
    conn_id: str
    host: str
    port: int
    user: str
    password: str
    database: str

    def describe(self) -> str:
        """``user@host:port/database`` (never the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def target_from_fields(conn_id: str, host: str | None, port: int | None, login: str | None,
                       password: str | None, schema: str | None) -> ServingTarget:
    """From an Airflow connection's fields (its ``schema`` is the database, as Airflow's Postgres hook reads it)."""
    if not host or not schema:
        raise ServingDatabaseError(
            f"connection {conn_id!r} has no {'host' if not host else 'database (the schema field)'}; set it in "
            f"Admin > Connections or in AIRFLOW_CONN_{conn_id.upper()}, e.g. "
            '{"conn_type": "postgres", "host": "db", "port": 5432, "login": "...", "password": "...", "schema": "serving"}')
    return ServingTarget(conn_id, host, int(port or 5432), login or "", password or "", schema)


def target_from_env(conn_id: str, env: dict[str, str] | None = None) -> ServingTarget:
    """``AIRFLOW_CONN_<CONN_ID>`` as JSON or as a ``postgresql://user:password@host:port/database`` URI."""
    env = os.environ if env is None else env
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    if variable not in env:
        raise ServingDatabaseError(
            f"the serving database's connection {conn_id!r} is not defined: set {variable} (JSON or a "
            "postgresql:// URI) or add the connection in the Airflow UI (Admin > Connections); make run "
            "starts an embedded PostgreSQL and sets it itself")
    value = env[variable].strip()
    fields: dict[str, Any]
    if value.startswith("{"):
        fields = json.loads(value)
    else:
        uri = urllib.parse.urlsplit(value)
        fields = {"host": uri.hostname, "port": uri.port, "login": urllib.parse.unquote(uri.username or ""),
                  "password": urllib.parse.unquote(uri.password or ""), "schema": uri.path.lstrip("/")}
    return target_from_fields(conn_id, fields.get("host"), fields.get("port"), fields.get("login"),
                              fields.get("password"), fields.get("schema"))


def connect(target: ServingTarget, timeout_seconds: int = 10):
    """A psycopg2 connection, or an error with the host, the database and what to do."""
    import psycopg2

    try:
        return psycopg2.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                                dbname=target.database, connect_timeout=timeout_seconds,
                                application_name="pipelines-publish")
    except psycopg2.OperationalError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        hint = ("check the login and password of the connection" if "password" in reason or "authentication" in reason
                else f"check that the database {target.database!r} exists" if "does not exist" in reason
                else "check that the server runs and the host and port are right (make serving-db-up starts "
                     "the embedded one)")
        raise ServingDatabaseError(
            f"cannot connect to the serving database {target.describe()} (connection {target.conn_id!r}): "
            f"{reason}; {hint}, then clear the publish task. Nothing was published, so the previous day keeps "
            "serving") from None
