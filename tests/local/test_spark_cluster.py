"""The same feature job on a Spark standalone cluster (master + worker on loopback) and on local[*]."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT
from pipelines.local import spark_cluster
from tests.features.frames import DAYS, job_args, load_job, snapshot, write_validated

pytestmark = pytest.mark.spark


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cluster_output_equals_local_output(spark, tmp_path, monkeypatch):
    validated = tmp_path / "validated"
    write_validated(spark, validated, DAYS)
    monkeypatch.setenv("TEST_HASH_KEY", "secret")
    args = ["--ds", "2026-11-27", *job_args(validated, window_days=3, min_seq_len=2, user_buckets=10,
                                            shuffle_partitions=2, hash_key_env="TEST_HASH_KEY")]
    load_job().main([*args, "--features-root", str(tmp_path / "local")])  # local[*]: the suite's session

    spec = spark_cluster.ClusterSpec(tmp_path / "cluster", port=_free_port(), webui_port=_free_port(),
                                     worker_webui_port=_free_port(), worker_cores=1, worker_memory="1g")
    try:
        master = spark_cluster.start(spec)
        assert all(spark_cluster.status(spec).values())
        env = dict(os.environ, SPARK_HOME=str(spark_cluster.spark_home()), PYSPARK_PYTHON=sys.executable)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "spark-submit"), "--master", master, "--driver-memory", "1g",
             "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.session.timeZone=UTC",
             str(REPO_ROOT / "spark_jobs" / "build_features.py"), *args, "--features-root", str(tmp_path / "cluster-out")],
            env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "app-" in (tmp_path / "cluster" / "master.log").read_text()  # the master ran the application
    finally:
        stopped = spark_cluster.stop(spec)
    assert len(stopped) == 2 and not any(spark_cluster.status(spec).values())
    local = snapshot(spark, tmp_path / "local" / "dt=2026-11-27")
    cluster = snapshot(spark, tmp_path / "cluster-out" / "dt=2026-11-27")
    assert json.dumps(cluster, sort_keys=True, default=str) == json.dumps(local, sort_keys=True, default=str)
