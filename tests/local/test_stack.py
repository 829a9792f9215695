"""The stack's process handling with a real, small service: start once, refuse a taken port, stop by pid."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from pipelines.config import load_config
from pipelines.local.stack import (
    Ports,
    Service,
    Stack,
    StackError,
    down,
    format_status,
    group_alive,
    running_pid,
    start_services,
)
from tests.conftest import free_port


@pytest.fixture
def small(tmp_path):
    config = load_config({"paths": {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake")}})
    stack = Stack(config, Ports(), env={"PATH": "/usr/bin:/bin"})
    port = free_port()
    service = Service("web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], "tcp", port)
    yield stack, service
    pid = running_pid(stack, service)
    if pid is not None:
        subprocess.run(["kill", "--", f"-{pid}"], check=False)


def test_a_service_starts_once_and_its_pid_file_names_that_very_process(small):
    stack, service = small
    assert start_services(stack, [service], timeout=30) == ["web"]
    pid = running_pid(stack, service)
    assert pid is not None and stack.pid_file("web").read_text().split()[0] == str(pid)
    assert start_services(stack, [service], timeout=30) == []  # already running: a no-op
    recorded = stack.pid_file("web").read_text()
    stack.pid_file("web").write_text(f"{pid} 1\n")  # same pid, another start time: not our process
    assert running_pid(stack, service) is None
    stack.pid_file("web").write_text(recorded)  # ours again, so the fixture stops it
    assert "web" in format_status([{"service": "web", "state": "ready", "pid": pid, "port": service.port,
                                    "log": str(stack.log_file("web"))}])


def test_a_taken_port_fails_with_the_service_its_port_and_what_to_do(small):
    stack, service = small
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", service.port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"web: port 127.0.0.1:{service.port} is already taken.*PIPELINE_STACK_"):
            start_services(stack, [service], timeout=10)


def test_a_service_that_dies_while_starting_is_named_with_its_log(small):
    stack, _ = small
    dying = Service("dying", [sys.executable, "-c", "print('bad config: no such key'); raise SystemExit(3)"],
                    "tcp", free_port())
    with pytest.raises(StackError, match=r"dying exited while starting; see .*dying\.log:\n(.|\n)*bad config"):
        start_services(stack, [dying], timeout=10)


def test_down_stops_exactly_the_recorded_process_group(small):
    stack, service = small
    start_services(stack, [service], timeout=30)
    pid = running_pid(stack, service)
    bystander = subprocess.Popen([sys.executable, "-m", "http.server", str(free_port()), "--bind", "127.0.0.1"],
                                 start_new_session=True)
    try:
        assert down(stack, every=[service]) == {"web": pid}
        deadline = time.monotonic() + 10
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(pid) and not stack.pid_file("web").exists()
        assert bystander.poll() is None  # a process it did not start (same command) is left alone
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.postgres
def test_a_database_made_for_a_removed_state_is_made_again_rather_than_refusing_logins(tmp_path):
    """var/ deleted by hand (the password with it) while PostgreSQL's data, outside it as root, stayed."""
    import os

    import psycopg2

    from pipelines.local.serving_db import PORT_ENV, serving_stack, start, stop
    from pipelines.local.stack import DB_USER, HOST, SERVING_DATABASE, database_password, remove_postgres_data

    config = load_config({"paths": {"var_dir": str(tmp_path), "lake_dir": str(tmp_path / "lake")}})
    stack = serving_stack(config, {**os.environ, PORT_ENV: str(free_port())})
    try:
        assert start(stack)
        stop(stack)
        (config.layout.secrets_dir / "stack-db-password").unlink()  # a new password comes with the next start
        assert start(stack)
        with psycopg2.connect(host=HOST, port=stack.ports.postgres, user=DB_USER, dbname=SERVING_DATABASE,
                              password=database_password(config)) as connection:
            assert connection.server_version >= 150000
    finally:
        stop(stack)
        remove_postgres_data(stack)
    assert not stack.pg_data.exists()
