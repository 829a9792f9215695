"""``make bench-scoring`` on a small vocabulary: every step timed, both ways agree, the projection printed."""

from __future__ import annotations

import pytest

from benchmarks.scoring import run


def test_bench_scoring_times_each_step_both_ways_and_checks_they_agree(capsys):
    assert run.main(["--users", "1100", "--items", "3000", "--batch-size", "512", "--engine-users", "0"]) == 0
    out = capsys.readouterr().out
    for step in ("model", "top-k blocks", "top-k every column", "affinity float32", "affinity float64"):
        assert f"\n{step} " in out
    assert "the same items and affinities: True" in out
    assert "per 500k users (projected linearly from 1,100)" in out
    assert "Spark" not in out  # --engine-users 0: no Spark session


@pytest.mark.spark
def test_bench_scoring_times_both_engines_on_the_same_users(capsys, spark):
    assert run.main(["--users", "300", "--items", "2000", "--batch-size", "128", "--engine-users", "700"]) == 0
    out = capsys.readouterr().out
    assert "engines: 700 users" in out
    for engine in ("in this process ", "Spark local[*], ", "the same again, workers warm "):
        assert f"\n{engine}" in out
    assert "users whose lists differ (float32 ties): 0" in out
