"""``make bench-scoring`` on a small vocabulary: every step timed, both ways agree, the projection printed."""

from __future__ import annotations

from benchmarks.scoring import run


def test_bench_scoring_times_each_step_both_ways_and_checks_they_agree(capsys):
    assert run.main(["--users", "1100", "--items", "3000", "--batch-size", "512"]) == 0
    out = capsys.readouterr().out
    for step in ("model", "top-k blocks", "top-k every column", "affinity float32", "affinity float64"):
        assert f"\n{step} " in out
    assert "the same items and affinities: True" in out
    assert "per 500k users (projected linearly from 1,100)" in out
