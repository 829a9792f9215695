"""A Spark standalone cluster on loopback from the installed PySpark: one master, one worker.

    python -m pipelines.local.spark_cluster start   # make spark-cluster
    python -m pipelines.local.spark_cluster stop    # make spark-cluster-stop
    python -m pipelines.local.spark_cluster status

Each daemon runs ``$SPARK_HOME/bin/spark-class org.apache.spark.deploy.{master.Master,worker.Worker}``
in its own process group, with its pid in ``<var>/spark-cluster/{master,worker}.pid`` and its log beside
it; ``stop`` ends exactly those processes (and only if the pid still runs that class). To run the DAG
on the cluster, point the ``spark_default`` connection at the master::

    AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "spark://127.0.0.1", "port": 7077}' make run
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The cluster could not start or stop; the message says why and where the logs are."""


@dataclass(frozen=True)
class ClusterSpec:
    state_dir: Path  # pid files, logs and the worker's work dir
    port: int = 7077
    webui_port: int = 8090  # not 8080: the Airflow UI's port
    worker_webui_port: int = 8091
    worker_cores: int = 2
    worker_memory: str = "2g"

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _environment(spec: ClusterSpec) -> dict[str, str]:
    env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=HOST, SPARK_LOG_DIR=str(spec.state_dir),
               PYSPARK_PYTHON=sys.executable)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _running(pid_file: Path, main_class: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and runs ``main_class``, else None.

    /proc/<pid>/cmdline reads empty while ``spark-class`` execs into java, so an empty read is retried.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return None
        if cmdline:
            return pid if main_class in cmdline else None
        time.sleep(0.05)
    return None


def _launch(spec: ClusterSpec, name: str, main_class: str, args: list[str]) -> int:
    log = (spec.state_dir / f"{name}.log").open("ab")
    command = [str(spark_home() / "bin" / "spark-class"), main_class, *args]
    process = subprocess.Popen(command, env=_environment(spec), stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    (spec.state_dir / f"{name}.pid").write_text(f"{process.pid}\n")
    return process.pid


def _wait_for(spec: ClusterSpec, name: str, text: str, timeout: float) -> None:
    log, deadline = spec.state_dir / f"{name}.log", time.monotonic() + timeout
    main_class = MASTER_CLASS if name == "master" else WORKER_CLASS
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if _running(spec.state_dir / f"{name}.pid", main_class) is None:
            break
        time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise ClusterError(f"spark {name} did not start within {timeout:.0f}s (waiting for {text!r}); see {log}:\n{tail}")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) != 0


def start(spec: ClusterSpec, timeout: float = 120.0) -> str:
    """Start the master and the worker (idempotent); return the master URL once the worker registered."""
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    if _running(spec.state_dir / "master.pid", MASTER_CLASS) and _running(spec.state_dir / "worker.pid", WORKER_CLASS):
        return spec.master_url
    stop(spec)
    for port in (spec.port, spec.webui_port, spec.worker_webui_port):
        if not _port_free(port):
            raise ClusterError(f"port {HOST}:{port} is in use; stop what listens there or choose other ports "
                               f"(python -m pipelines.local.spark_cluster start --port ... --webui-port ...)")
    for name in ("master", "worker"):
        (spec.state_dir / f"{name}.log").write_text("")
    _launch(spec, "master", MASTER_CLASS, ["--host", HOST, "--port", str(spec.port),
                                           "--webui-port", str(spec.webui_port)])
    _wait_for(spec, "master", "I have been elected leader", timeout)
    _launch(spec, "worker", WORKER_CLASS, [spec.master_url, "--host", HOST, "--cores", str(spec.worker_cores),
                                           "--memory", spec.worker_memory, "--webui-port", str(spec.worker_webui_port),
                                           "--work-dir", str(spec.state_dir / "work")])
    _wait_for(spec, "worker", "Successfully registered with master", timeout)
    return spec.master_url


def stop(spec: ClusterSpec, timeout: float = 30.0) -> list[int]:
    """Stop the worker, then the master, that ``start`` recorded; return the pids stopped."""
    stopped = []
    for name, main_class in (("worker", WORKER_CLASS), ("master", MASTER_CLASS)):
        pid_file = spec.state_dir / f"{name}.pid"
        pid = _running(pid_file, main_class)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _running(pid_file, main_class) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _running(pid_file, main_class):
                os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def status(spec: ClusterSpec) -> dict[str, int | None]:
    return {name: _running(spec.state_dir / f"{name}.pid", cls)
            for name, cls in (("master", MASTER_CLASS), ("worker", WORKER_CLASS))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.spark_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--webui-port", type=int, default=8090)
    parser.add_argument("--worker-webui-port", type=int, default=8091)
    parser.add_argument("--worker-cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--worker-memory", default="4g")
    args = parser.parse_args(argv)
    from pipelines.config import load_config

    spec = ClusterSpec(load_config().layout.spark_cluster_dir, args.port, args.webui_port,
                       args.worker_webui_port, args.worker_cores, args.worker_memory)
    try:
        if args.command == "start":
            url = start(spec)
            print(f"spark cluster up: {url} (master UI http://{HOST}:{spec.webui_port}); pids and logs in "
                  f"{spec.state_dir}\nrun the DAG on it: AIRFLOW_CONN_SPARK_DEFAULT='{{\"conn_type\": \"spark\", "
                  f"\"host\": \"spark://{HOST}\", \"port\": {spec.port}}}' make run")
        elif args.command == "stop":
            pids = stop(spec)
            print(f"spark cluster stopped (pids {pids})" if pids else "spark cluster: nothing was running")
        else:
            print(status(spec))
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
