"""The production stack on one machine, as real processes: ``make stack-up``, ``stack-status``, ``stack-down``.

PostgreSQL (Airflow's metadata and MLflow's store), Redis (the Celery broker), Airflow 3's api-server,
scheduler, dag-processor and triggerer with the CeleryExecutor, one Celery worker for the ``default``
queue and one for the ``gpu`` queue (the training tasks), an MLflow tracking server on PostgreSQL that
serves its own artifacts, and a Spark standalone master and worker. ``SERVICES`` is the one list of
them: ``docker/compose.yaml`` describes the same services with the same environment, and
``tests/local/test_compose.py`` fails when the two drift apart.

Each service runs in its own process group with its pid in ``<var>/stack/pids/<service>.pid`` and its
log in ``<var>/stack/logs/<service>.log``; ``down`` stops exactly those processes (by pid, never by
name, and only while the pid is still the process that was started). ``up`` twice is a no-op. Passwords
and secrets are generated once under ``<var>/secrets/`` (0600). PostgreSQL refuses to run as root:
under root it runs as the ``postgres`` system user, with its data directory outside ``var/`` where
that user can reach it.

    python -m pipelines.local.stack up | status | down | env
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import REPO_ROOT, PipelineConfig
from pipelines.local.environment import pipeline_environment, pools_file, shell_exports
from pipelines.local.spark_cluster import MASTER_CLASS, WORKER_CLASS, spark_home

HOST = "127.0.0.1"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_USER = "pipeline"
SERVING_DATABASE = "serving"  # the published recommendations and audiences (pipelines.publishing)
DATABASES = ("airflow", "mlflow", SERVING_DATABASE)
ADMIN = "admin"  # the Airflow UI's user (simple auth manager); its password is generated
PRELOAD_MODULE = "pipelines.local.worker_preload"  # what each Celery worker imports before forking tasks


class StackError(RuntimeError):
    """A service could not start or stop; the message names it, its log and what to do."""


@dataclass(frozen=True)
class Ports:
    postgres: int = 5433  # not 5432: leave a PostgreSQL the machine already runs alone
    redis: int = 6380
    airflow: int = 8080
    mlflow: int = 5000
    spark: int = 7077
    spark_ui: int = 8090
    spark_worker_ui: int = 8091
    worker_logs: int = 8793

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Ports:
        """Ports from ``PIPELINE_STACK_<NAME>_PORT`` where set (a second stack, or a taken port)."""
        return cls(**{name: int(env[f"PIPELINE_STACK_{name.upper()}_PORT"]) for name in cls.__dataclass_fields__
                      if f"PIPELINE_STACK_{name.upper()}_PORT" in env})


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    ready: str  # "tcp", "http:<url>", "log:<text>" or "health:<component>" (Airflow's health endpoint)
    port: int | None = None
    user: str | None = None  # run as this system user (PostgreSQL under root)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    config: PipelineConfig
    ports: Ports
    env: dict[str, str]  # the environment of every service and of the pipeline's tasks
    name: str = "stack"  # <var>/<name>/ holds its pids, logs and data ("serving-db": make run's PostgreSQL)

    @property
    def state_dir(self) -> Path:
        return self.config.layout.var_dir / self.name

    def pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    @property
    def airflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.airflow}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.mlflow}"

    @property
    def pg_data(self) -> Path:
        if os.geteuid() != 0:
            return self.state_dir / "postgres"
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pipeline-postgres-{digest}"  # reachable by the postgres user

    def admin_password(self) -> str:
        passwords = json.loads(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
        return passwords[ADMIN]


# --- the one list of services ------------------------------------------------------------------------

def _secret(config: PipelineConfig, name: str) -> str:
    path = config.layout.secrets_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def stack_environment(config: PipelineConfig, ports: Ports, base: dict[str, str] | None = None) -> dict[str, str]:
    """Airflow on PostgreSQL with Celery on Redis, MLflow on its server, Spark on the standalone master."""
    base = dict(os.environ if base is None else base)
    home = config.layout.var_dir / "stack" / "airflow"
    password = _secret(config, "stack-db-password")
    database = f"{DB_USER}:{password}@{HOST}:{ports.postgres}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}/airflow",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{HOST}:{ports.redis}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{database}/airflow",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # Each worker imports the tasks' libraries once, before it forks the tasks' processes.
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": [PRELOAD_MODULE]}),
        # Every component signs and checks the Task SDK's tokens with the same key ("Invalid auth token").
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(config, "airflow-jwt-secret"),
        "AIRFLOW__API__SECRET_KEY": _secret(config, "airflow-api-secret-key"),
        "AIRFLOW__API__BASE_URL": f"http://{HOST}:{ports.airflow}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{ports.airflow}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json.generated"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports.worker_logs),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        f"AIRFLOW_CONN_{config.spark.conn_id.upper()}": json.dumps(
            {"conn_type": "spark", "host": f"spark://{HOST}", "port": ports.spark}),
        # The publish task's serving database: a database of the same server here, the shop's own in production.
        f"AIRFLOW_CONN_{config.publishing.conn_id.upper()}": json.dumps(
            {"conn_type": "postgres", "host": HOST, "port": ports.postgres, "login": DB_USER, "password": password,
             "schema": SERVING_DATABASE}),
        "PIPELINE__MLFLOW__TRACKING_URI": f"http://{HOST}:{ports.mlflow}",
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,
    }
    return pipeline_environment(config, {**base, **env})


def services(stack: Stack) -> list[Service]:
    """Every service, in start order (the first two are what the others need up first)."""
    ports, env, py = stack.ports, stack.env, sys.executable
    airflow = [py, "-m", "airflow"]
    password = _secret(stack.config, "stack-db-password")
    store = f"postgresql+psycopg2://{DB_USER}:{password}@{HOST}:{ports.postgres}/mlflow"
    spark_class = str(Path(env["SPARK_HOME"]) / "bin" / "spark-class")
    return [
        postgres_service(stack),
        Service("redis", [_redis_server(), "--bind", HOST, "--port", str(ports.redis), "--save", "",
                          "--appendonly", "no", "--dir", str(stack.state_dir)], "tcp", ports.redis),
        Service("airflow-apiserver", [*airflow, "api-server", "--host", HOST, "--port", str(ports.airflow)],
                f"http:{stack.airflow_url}/api/v2/monitor/health", ports.airflow),
        Service("airflow-scheduler", [*airflow, "scheduler"], "health:scheduler"),
        Service("airflow-dag-processor", [*airflow, "dag-processor"], "health:dag_processor"),
        Service("airflow-triggerer", [*airflow, "triggerer"], "health:triggerer"),
        Service("airflow-worker", [*airflow, "celery", "worker", "--queues", "default", "--concurrency", "2",
                                   "--celery-hostname", "default@%h", "--without-gossip", "--without-mingle"],
                "log:ready.", ports.worker_logs),
        Service("airflow-worker-gpu", [*airflow, "celery", "worker", "--queues", stack.config.airflow.gpu_queue,
                                       "--concurrency", "1", "--celery-hostname", "gpu@%h", "--skip-serve-logs",
                                       "--without-gossip", "--without-mingle"], "log:ready."),
        Service("mlflow", [py, "-m", "mlflow", "server", "--host", HOST, "--port", str(ports.mlflow),
                           "--workers", "1", "--backend-store-uri", store, "--serve-artifacts",
                           "--artifacts-destination", (stack.state_dir / "mlflow-artifacts").as_uri(),
                           "--allowed-hosts", f"{HOST}:{ports.mlflow},localhost:{ports.mlflow}"],
                f"http:{stack.mlflow_url}/health", ports.mlflow),
        Service("spark-master", [spark_class, MASTER_CLASS, "--host", HOST, "--port", str(ports.spark),
                                 "--webui-port", str(ports.spark_ui)], "log:I have been elected leader", ports.spark),
        Service("spark-worker", [spark_class, WORKER_CLASS, f"spark://{HOST}:{ports.spark}", "--host", HOST,
                                 "--cores", str(os.cpu_count() or 2), "--memory", "4g",
                                 "--webui-port", str(ports.spark_worker_ui),
                                 "--work-dir", str(stack.state_dir / "spark-work")],
                "log:Successfully registered with master", ports.spark_worker_ui),
    ]


def postgres_service(stack: Stack) -> Service:
    ports = stack.ports
    return Service("postgres", [str(PG_BIN / "postgres"), "-D", str(stack.pg_data), "-p", str(ports.postgres),
                                "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={stack.pg_data}"],
                   "tcp", ports.postgres, user="postgres" if os.geteuid() == 0 else None)


def database_password(config: PipelineConfig) -> str:
    """The password of the ``pipeline`` role on the local PostgreSQL servers (generated once, 0600)."""
    return _secret(config, "stack-db-password")


def _redis_server() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if found is None:
        raise StackError("redis-server not found: make stack-up installs Debian's (apt-get install redis-server); "
                         "without root, install it yourself and rerun")
    return found


def build_stack(config: PipelineConfig, base: dict[str, str] | None = None) -> Stack:
    base = dict(os.environ if base is None else base)
    ports = Ports.from_env(base)
    return Stack(config, ports, stack_environment(config, ports, base))


# --- processes -----------------------------------------------------------------------------------

def running_pid(stack: Stack, service: Service) -> int | None:
    """The recorded pid of ``service`` if that very process still runs (same pid, same start time).

    The start time (``/proc/<pid>/stat``) tells the service from a later process that got its pid;
    the command line cannot (Airflow and Redis rewrite their process titles).
    """
    try:
        pid, started = stack.pid_file(service.name).read_text().split()
        return int(pid) if _start_time(int(pid)) == started else None
    except (FileNotFoundError, ValueError):
        return None


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return None if fields[0] == "Z" else fields[19]  # starttime; a zombie has exited


def free_port() -> int:
    """A TCP port free on the stack's host right now (for a throwaway server: a test, a benchmark)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def _launch(stack: Stack, service: Service) -> int:
    log_file = stack.log_file(service.name)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stack.pid_file(service.name).parent.mkdir(parents=True, exist_ok=True)
    command = service.command
    if service.user:
        command = ["setpriv", f"--reuid={service.user}", f"--regid={service.user}", "--init-groups", *command]
    with log_file.open("ab") as log:
        process = subprocess.Popen(command, env={**stack.env, **service.env}, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=REPO_ROOT, start_new_session=True)
    stack.pid_file(service.name).write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def _airflow_health(stack: Stack) -> dict:
    try:
        with urllib.request.urlopen(f"{stack.airflow_url}/api/v2/monitor/health", timeout=3) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return {}


def is_ready(stack: Stack, service: Service, log_offset: int = 0) -> bool:
    kind, _, detail = service.ready.partition(":")
    if kind == "tcp":
        return _port_open(service.port)
    if kind == "http":
        try:
            with urllib.request.urlopen(detail, timeout=3) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False
    if kind == "log":
        try:
            with stack.log_file(service.name).open("rb") as log:
                log.seek(log_offset)
                return detail.encode() in log.read()
        except FileNotFoundError:
            return False
    if kind == "health":
        return _airflow_health(stack).get(detail, {}).get("status") == "healthy"
    raise ValueError(f"unknown readiness check {service.ready!r} of {service.name}")


def _wait_ready(stack: Stack, pending: dict[str, tuple[Service, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, (service, offset) in list(pending.items()):
            if running_pid(stack, service) is None:
                raise StackError(f"{name} exited while starting; see {stack.log_file(name)}:\n"
                                 f"{_tail(stack.log_file(name))}\nfix the cause, then make stack-up again")
            if is_ready(stack, service, offset):
                del pending[name]
        time.sleep(0.5)
    if pending:
        name = next(iter(pending))
        raise StackError(f"{', '.join(pending)} not ready within {timeout:.0f}s (waiting for "
                         f"{pending[name][0].ready}); see {stack.log_file(name)}:\n{_tail(stack.log_file(name))}\n"
                         "fix the cause, then make stack-up again (make stack-down stops what started)")


def start_services(stack: Stack, group: list[Service], timeout: float) -> list[str]:
    """Start the services of ``group`` that are not running (all at once) and wait until each is ready."""
    pending, started = {}, []
    for service in group:
        if running_pid(stack, service) is not None:
            continue
        if service.port is not None and _port_open(service.port):
            raise StackError(f"{service.name}: port {HOST}:{service.port} is already taken by another process; "
                             f"stop it, or give the stack another port (PIPELINE_STACK_"
                             f"{_port_name(stack, service)}_PORT=...) and rerun")
        offset = stack.log_file(service.name).stat().st_size if stack.log_file(service.name).exists() else 0
        _launch(stack, service)
        pending[service.name] = (service, offset)
        started.append(service.name)
    _wait_ready(stack, pending, timeout)
    return started


def _port_name(stack: Stack, service: Service) -> str:
    for name in Ports.__dataclass_fields__:
        if getattr(stack.ports, name) == service.port:
            return name.upper()
    return service.name.upper()


# --- bootstrap: PostgreSQL's cluster and databases, Airflow's metadata ----------------------------

def _as_postgres(command: list[str]) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command] if os.geteuid() == 0 \
        else command


def init_postgres(stack: Stack) -> None:
    """``initdb`` of the stack's data directory, once (the ``pipeline`` role with the generated password)."""
    data = stack.pg_data
    password = _secret(stack.config, "stack-db-password")
    fingerprint_file = data.with_name(data.name + ".password-sha256")
    fingerprint = hashlib.sha256(password.encode()).hexdigest()
    if (data / "PG_VERSION").exists():
        if not fingerprint_file.exists() or fingerprint_file.read_text() == fingerprint:
            return
        # Initialised for a state folder that was removed since (var/ deleted by hand): its role has
        # another password, so nothing could log in. Its data went with that state; start afresh.
        if running_pid(stack, postgres_service(stack)):
            raise StackError(f"postgres: {data} is running but was initialised with a password this state "
                             f"({stack.state_dir}) no longer has; stop that server (make stack-down, or kill the pid "
                             f"in {data / 'postmaster.pid'}) and run this again")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    password_file = data.with_name(data.name + ".initdb-password")
    password_file.write_text(password)
    password_file.chmod(0o600)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        data.chmod(0o700)
        for path in (data, password_file):
            os.chown(path, user.pw_uid, user.pw_gid)
    done = subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", DB_USER,
                                        "--auth-local=trust", "--auth-host=scram-sha-256",
                                        f"--pwfile={password_file}", "-E", "UTF8", "--no-instructions"]),
                          capture_output=True, text=True)
    password_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StackError(f"postgres: initdb of {data} failed:\n{done.stderr[-2000:]}")
    fingerprint_file.write_text(fingerprint)


def remove_postgres_data(stack: Stack) -> None:
    """Delete the (stopped) server's data directory and the fingerprint of the password it was made with."""
    shutil.rmtree(stack.pg_data, ignore_errors=True)
    stack.pg_data.with_name(stack.pg_data.name + ".password-sha256").unlink(missing_ok=True)


def create_databases(stack: Stack, databases: tuple[str, ...] = DATABASES) -> None:
    """Create each of ``databases`` that the server does not have yet (idempotent)."""
    import psycopg2

    password = _secret(stack.config, "stack-db-password")
    connection = psycopg2.connect(host=HOST, port=stack.ports.postgres, user=DB_USER, password=password,
                                  dbname="postgres")
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction (nor in ``with connection``)
    try:
        with connection.cursor() as cursor:
            for database in databases:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()


def _migrate_airflow(stack: Stack) -> None:
    Path(stack.env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = [sys.executable, "-m", "airflow"]
    for what, command in (("airflow db migrate", [*airflow, "db", "migrate"]),
                          ("airflow pools import", [*airflow, "pools", "import",
                                                    str(pools_file(stack.config, Path(stack.env["AIRFLOW_HOME"])))])):
        with stack.log_file("airflow-init").open("ab") as log:
            done = subprocess.run(command, env=stack.env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise StackError(f"airflow-init: {what} failed (exit {done.returncode}); see "
                             f"{stack.log_file('airflow-init')}:\n{_tail(stack.log_file('airflow-init'))}")


def up(stack: Stack, timeout: float = 180.0, out=sys.stdout) -> list[str]:
    """Start every service not running yet and wait until all are ready; the names started."""
    started_at = time.monotonic()
    for folder in ("logs", "pids"):
        (stack.state_dir / folder).mkdir(parents=True, exist_ok=True)
    every = services(stack)
    by_name = {service.name: service for service in every}
    init_postgres(stack)
    started = start_services(stack, [by_name["postgres"], by_name["redis"]], timeout)
    create_databases(stack)
    if "postgres" in started or not (Path(stack.env["AIRFLOW_HOME"]) / ".migrated").exists():
        _migrate_airflow(stack)
        (Path(stack.env["AIRFLOW_HOME"]) / ".migrated").write_text("")
    started += start_services(stack, [by_name["airflow-apiserver"], by_name["mlflow"], by_name["spark-master"]], timeout)
    started += start_services(stack, [s for s in every if s.name not in {"postgres", "redis", "airflow-apiserver",
                                                                  "mlflow", "spark-master"}], timeout)
    print(f"stack up in {time.monotonic() - started_at:.0f}s ({len(started)} started, "
          f"{len(every) - len(started)} already running)", file=out)
    return started


def down(stack: Stack, timeout: float = 30.0, every: list[Service] | None = None) -> dict[str, int]:
    """Stop exactly the processes ``up`` recorded; {service: pid stopped}.

    The services go down together, then Redis and PostgreSQL, which the others write to while they
    stop. Each gets SIGTERM (PostgreSQL SIGINT, its fast shutdown) to its process group, and SIGKILL
    after ``timeout`` seconds.
    """
    stopped = {}
    every = services(stack) if every is None else every
    for group in ([s for s in every if s.name not in STORES], [s for s in every if s.name in STORES]):
        pids = {service.name: running_pid(stack, service) for service in group}
        pids = {name: pid for name, pid in pids.items() if pid is not None}
        for name, pid in pids.items():
            _signal_group(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(group_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids.values():
            if group_alive(pid):
                _signal_group(pid, signal.SIGKILL)
        stopped.update(pids)
        for service in group:
            stack.pid_file(service.name).unlink(missing_ok=True)
    return stopped


STORES = ("postgres", "redis")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)  # the service and the children it forked (its process group is its pid)
    except ProcessLookupError:
        pass


def group_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # a service this process started itself (tests) must not stay a zombie
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(stack: Stack) -> list[dict[str, object]]:
    rows = []
    for service in services(stack):
        pid = running_pid(stack, service)
        state = "down" if pid is None else ("ready" if is_ready(stack, service) or service.ready.startswith("log")
                                            else "starting")
        rows.append({"service": service.name, "state": state, "pid": pid, "port": service.port,
                     "log": str(stack.log_file(service.name))})
    return rows


def format_status(rows: list[dict[str, object]]) -> str:
    lines = [f"{'service':<22} {'state':<9} {'pid':>8} {'port':>6}  log"]
    lines += [f"{row['service']:<22} {row['state']:<9} {row['pid'] or '-':>8} {row['port'] or '-':>6}  {row['log']}"
              for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "status", "down", "env", "purge"])
    args = parser.parse_args(argv)
    from pipelines.config import load_config

    stack = build_stack(load_config())
    try:
        if args.command == "up":
            up(stack)
            print(format_status(status(stack)))
            print(f"Airflow UI {stack.airflow_url} (user {ADMIN}, password {stack.admin_password()}); "
                  f"MLflow UI {stack.mlflow_url}; Spark master UI http://{HOST}:{stack.ports.spark_ui}")
        elif args.command == "status":
            print(format_status(status(stack)))
        elif args.command == "purge":  # make clean: stopped, and PostgreSQL's data (outside var/ under root) gone
            down(stack)
            remove_postgres_data(stack)
            print(f"stack: stopped and its PostgreSQL data removed ({stack.pg_data})")
        elif args.command == "down":
            stopped = down(stack)
            print("stopped " + ", ".join(f"{name} (pid {pid})" for name, pid in stopped.items()) if stopped
                  else "stack: nothing was running")
        else:
            print(shell_exports(stack.env, sorted(k for k in stack.env
                                                  if k.startswith(("AIRFLOW", "PIPELINE", "SPARK_HOME")))))
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
