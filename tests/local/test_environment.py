"""The embedded runtime: the Java check a newcomer hits first, and the environment it builds."""

from __future__ import annotations

import pytest

from pipelines.config import load_config
from pipelines.local.environment import EnvironmentProblem, check_java, local_hash_key, pipeline_environment


def _fake_java(tmp_path, version_line: str):
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return str(java)


def test_java_17_passes(tmp_path):
    assert "17" in check_java(_fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15'))


@pytest.mark.parametrize("line", ['java version "1.8.0_392"', 'openjdk version "11.0.2" 2019-01-15'])
def test_old_java_fails_with_one_clear_line(tmp_path, line):
    with pytest.raises(EnvironmentProblem, match=r"Spark needs Java 17\+"):
        check_java(_fake_java(tmp_path, line))


def test_missing_java_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EnvironmentProblem, match="java not found.*install"):
        check_java()


def test_environment_keeps_what_is_already_set(tmp_path):
    config = load_config()
    env = pipeline_environment(config, base={"PATH": "/usr/bin", "AIRFLOW_CONN_SPARK_DEFAULT": "spark://h:7077",
                                             "PIPELINE_USER_HASH_KEY": "from-vault"})
    assert env["AIRFLOW_CONN_SPARK_DEFAULT"] == "spark://h:7077"
    assert env["PIPELINE_USER_HASH_KEY"] == "from-vault"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")


def test_local_hash_key_is_created_once_and_private(tmp_path):
    first = local_hash_key(tmp_path / "secrets")
    assert local_hash_key(tmp_path / "secrets") == first and len(first) == 64
    assert (tmp_path / "secrets" / "user-hash-key").stat().st_mode & 0o077 == 0
