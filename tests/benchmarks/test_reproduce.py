"""`make reproduce` and `make bench-models` on a tiny synthetic file: report fields, MLflow runs, table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.models import reproduce
from benchmarks.models.paper_benchmark import dataset_name, parse_budgets, parse_models, read_sequence_file


@pytest.fixture()
def sequence_file(tmp_path):
    """60 users walking a 25-item cycle plus one short user; users out of order, each in time order."""
    rng = np.random.default_rng(0)
    lines = []
    for user in rng.permutation(np.arange(2, 62)):
        start, length = rng.integers(0, 25), rng.integers(4, 10)
        lines += [f"{user} {(start + step) % 25 + 1}" for step in range(length)]
    lines += ["1 3", "1 4"]  # too short to evaluate, yet it shifts every other user id up by one
    path = tmp_path / "toy" / "sequences.txt"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_sequence_file_groups_users_and_keeps_time_order(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2 7\n1 3\n2 5\n1 4\n")
    items, offsets, num_items = read_sequence_file(path)
    np.testing.assert_array_equal(items, [3, 4, 7, 5])
    np.testing.assert_array_equal(offsets, [0, 2, 4])
    assert num_items == 7 and dataset_name(path) == "pairs"


def test_bad_options_name_the_allowed_values():
    with pytest.raises(ValueError, match="choose from.*sasrec"):
        parse_models("sasrec,bert4rec")
    assert parse_budgets("sasrec=60", ["sasrec", "caser"]) == {"sasrec": 60.0, "caser": None}
    assert parse_budgets("30", ["caser"]) == {"caser": 30.0}


def test_reproduce_writes_the_report_and_logs_every_run(sequence_file, tmp_path, monkeypatch, capsys):
    import mlflow

    tracking_uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("PIPELINE__MLFLOW__TRACKING_URI", tracking_uri)
    monkeypatch.setenv("PIPELINE__PATHS__REPORTS_DIR", str(tmp_path / "reports"))
    argv = ["--dataset", str(sequence_file), "--models", "popularity,sasrec", "--max-epochs", "1"]
    assert reproduce.main(argv) == 0

    assert reproduce.main([*argv[:2], "--models", "caser", "--max-epochs", "1"]) == 0  # keeps the others

    report = json.loads((tmp_path / "reports" / "reproduce-toy.json").read_text())
    assert set(report["models"]) == {"popularity", "sasrec", "caser"}
    assert report["models"]["caser"]["params"]["num_user_buckets"] == 61
    rows = {(row["model"], row["protocol"], row["metric"]): row for row in report["results"]}
    assert set(rows) >= {(m, p, "ndcg_at_10") for m in report["models"] for p in ("sampled", "full")}
    sasrec = rows[("sasrec", "sampled", "ndcg_at_10")]
    assert sasrec["published"] is None and sasrec["epochs"] == 1 and sasrec["seconds"] > 0  # a toy: no paper
    assert 0 <= sasrec["value"] <= 1 and rows[("sasrec", "full", "hr_at_10")]["published"] is None
    assert report["num_users"] == 60 and report["models"]["sasrec"]["params"]["dropout"] == 0.5

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=["reproduce-toy"], output_format="list")
    assert {run.data.tags["reproduce.model"] for run in runs} == set(report["models"])
    assert all("test_sampled_ndcg_at_10" in run.data.metrics for run in runs)
    out = capsys.readouterr().out
    assert "sasrec" in out.split("paper protocol")[-1]  # the final table
    assert "0.5360" not in out and "no published figures are known here for 'toy'" in out


def test_the_paper_columns_show_the_datasets_own_published_rows_or_stay_blank():
    from benchmarks.models.paper_benchmark import published_for

    assert published_for("amazon-games", "sasrec") == (0.7410, 0.5360)
    assert published_for("amazon-games", "caser") == (0.5282, 0.3214)
    assert published_for("ml-1m", "sasrec") == (0.8245, 0.5905) and published_for("ml-1m", "caser") is None
    assert published_for("rees46-sample", "sasrec") is None
    outcome = {"test": {"sampled": {"hr_at_10": 0.7, "ndcg_at_10": 0.5}, "full": {"hr_at_10": 0.1, "ndcg_at_10": 0.05,
                                                                                 "mrr": 0.04}},
               "seconds": 1.0, "epochs": 1, "best_epoch": 1, "seconds_per_epoch": 1.0}
    games = reproduce.format_table({"sasrec": outcome}, "amazon-games").splitlines()[-1]
    other = reproduce.format_table({"sasrec": outcome}, "diginetica-sample").splitlines()[-1]
    assert "0.7410" in games and "0.5360" in games
    assert "0.7410" not in other and other.split()[2] == "-" and other.split()[4] == "-"


def test_bench_models_prints_epoch_time_and_throughput(sequence_file, capsys):
    from benchmarks.models import bench_models

    assert bench_models.main(["--dataset", str(sequence_file), "--models", "caser", "--epochs", "1"]) == 0
    table = capsys.readouterr().out.split("rows/s")[-1]
    assert "caser" in table and "sasrec" not in table
