"""The serving database on one machine: an embedded PostgreSQL that ``make run`` starts and stops itself.

The publish task writes the day's recommendations and audiences to the PostgreSQL server named by the
Airflow connection ``publishing.conn_id`` (``AIRFLOW_CONN_POSTGRES_SERVING``). When the environment
already defines that connection (the production stack, the shop's own server), nothing starts here.
Otherwise ``embedded_serving_db`` starts Debian's PostgreSQL 15 on ``127.0.0.1:<port>`` (5434, or
``PIPELINE_SERVING_DB_PORT``) with its data under ``<var>/serving-db/`` (outside ``var/`` under root,
see ``pipelines.local.stack``), creates the ``serving`` database, yields the connection's variable,
and stops the server again if it started it. The data stay, so the next ``make run`` (or
``make serving-db-up`` and ``psql``) finds the days published before.

    python -m pipelines.local.serving_db up | down | status | psql [SQL] | purge

``purge`` (``make clean``) stops it and deletes its data, which under root live outside ``var/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from pipelines.config import PipelineConfig
from pipelines.local.stack import (
    DB_USER,
    HOST,
    PG_BIN,
    SERVING_DATABASE,
    Ports,
    Stack,
    StackError,
    create_databases,
    database_password,
    down,
    init_postgres,
    postgres_service,
    remove_postgres_data,
    running_pid,
    start_services,
)

PORT_ENV = "PIPELINE_SERVING_DB_PORT"
DEFAULT_PORT = 5434  # beside the stack's 5433, so both can run at once
STATE_NAME = "serving-db"


def connection_variable(config: PipelineConfig) -> str:
    """``AIRFLOW_CONN_<CONN_ID>``: where Airflow (and the publish task) reads the serving connection."""
    return f"AIRFLOW_CONN_{config.publishing.conn_id.upper()}"


def connection_value(config: PipelineConfig, port: int, database: str = SERVING_DATABASE) -> str:
    """The connection as Airflow takes it from the environment (JSON)."""
    return json.dumps({"conn_type": "postgres", "host": HOST, "port": port, "login": DB_USER,
                       "password": database_password(config), "schema": database})


def serving_stack(config: PipelineConfig, env: dict[str, str] | None = None) -> Stack:
    env = dict(os.environ if env is None else env)
    port = int(env.get(PORT_ENV, DEFAULT_PORT))
    return Stack(config, Ports(postgres=port), env, name=STATE_NAME)


def start(stack: Stack, timeout: float = 60.0) -> bool:
    """Start the embedded server if it is not running and create the database; True if it started it."""
    init_postgres(stack)
    started = start_services(stack, [postgres_service(stack)], timeout)
    try:
        create_databases(stack, (SERVING_DATABASE,))
    except BaseException:
        if started:  # do not leave a server behind that nobody will stop
            stop(stack)
        raise
    return bool(started)


def stop(stack: Stack) -> dict[str, int]:
    return down(stack, every=[postgres_service(stack)])


@contextlib.contextmanager
def embedded_serving_db(config: PipelineConfig, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The variables that point the publish task at a serving database, starting one if none is set."""
    variable = connection_variable(config)
    if variable in env:  # a server the deployment configured: use it, start nothing
        yield {}
        return
    stack = serving_stack(config, env)
    started = start(stack)
    try:
        yield {variable: connection_value(config, stack.ports.postgres)}
    finally:
        if started:
            stop(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.serving_db", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "psql", "purge"])
    parser.add_argument("sql", nargs="?", default=None, help="psql: run this statement and exit")
    args = parser.parse_args(argv)
    from pipelines.config import load_config

    config = load_config()
    stack = serving_stack(config)
    service = postgres_service(stack)
    try:
        if args.command == "up":
            start(stack)
            print(f"serving database up: postgresql://{DB_USER}@{HOST}:{stack.ports.postgres}/{SERVING_DATABASE} "
                  f"(pid {running_pid(stack, service)}, log {stack.log_file(service.name)}); "
                  f"make serving-psql opens psql; make serving-db-down stops it")
        elif args.command == "down":
            stopped = stop(stack)
            print(f"stopped the serving database (pid {stopped['postgres']})" if stopped
                  else "serving database: it was not running")
        elif args.command == "purge":
            stop(stack)
            remove_postgres_data(stack)
            print(f"serving database: stopped and its data removed ({stack.pg_data})")
        elif args.command == "status":
            pid = running_pid(stack, service)
            print(f"serving database: {'running, pid ' + str(pid) if pid else 'down'}, port {stack.ports.postgres}, "
                  f"data {stack.pg_data}, log {stack.log_file(service.name)}")
        else:
            started = start(stack)
            try:
                command = [str(PG_BIN / "psql"), "-h", HOST, "-p", str(stack.ports.postgres), "-U", DB_USER,
                           SERVING_DATABASE, *(["-c", args.sql] if args.sql else [])]
                return subprocess.run(command, env={**os.environ, "PGPASSWORD": database_password(config)}).returncode
            finally:
                if started and args.sql:
                    stop(stack)
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
