"""Epochs, not seconds, end training, so two processes trained on the same data get the same model.

That is what lets a rerun, a backfill and the scheduler's night write the same recommendations as
``make run`` did for the same data: the time budget is only a safety stop, reported when it fires.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.config import REPO_ROOT, load_config
from pipelines.reporting.summary import format_run_summary, safety_stops

TRAIN = """
import json
import numpy as np
from pipelines.models.data import build_splits
from pipelines.models.training import TrainConfig, train_model
rng = np.random.default_rng(0)
seqs = [[(s + j) % 40 + 1 for j in range(n)] for s, n in zip(rng.integers(0, 40, 150), rng.integers(5, 15, 150))]
splits = build_splits(seqs, np.arange(150) % 7, 40, 10)
result = train_model("{model}", 40, {{"hidden_units": 16, "num_blocks": 1}} if "{model}" == "sasrec" else
                     {{"embedding_dim": 8, "hidden_units": 8, "num_negatives": 8}}, TrainConfig(epochs=3, batch_size=32,
                     time_budget_seconds=None), splits)
weights = float(sum(np.abs(w).sum() for w in result.model.get_weights()))
print(json.dumps({{"history": [{{k: v for k, v in h.items() if "seconds" not in k}} for h in result.history],
                  "weights": weights}}))
"""


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_two_processes_train_the_same_model_on_the_same_data(model):
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", TRAIN.format(model=model)], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
                                                           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]  # every epoch's loss and validation scores, and the final weights, bit for bit


def test_a_models_own_epochs_never_exceed_the_global_maximum():
    config = load_config({"training": {"epochs": 30, "model_epochs": {"caser": 8}}})
    assert config.training.epochs_for("caser") == 8 and config.training.epochs_for("sasrec") == 30
    capped = load_config({"training": {"epochs": 5}})  # a run's {"training": {"epochs": 5}} caps every model
    assert {capped.training.epochs_for(m) for m in capped.training.models} == {5}


def test_the_summary_warns_when_the_safety_time_budget_fired():
    evaluation = {"k": 10, "num_test_users": 10, "popularity": {"hr_at_10": 0.1, "ndcg_at_10": 0.05},
                  "candidates": [{"model": "caser", "version": "1", "test": {"hr_at_10": 0.2, "ndcg_at_10": 0.1},
                                  "epochs_run": 3, "stopped_reason": "time_budget", "train_seconds": 901.2},
                                 {"model": "sasrec", "version": "2", "test": {"hr_at_10": 0.3, "ndcg_at_10": 0.2},
                                  "epochs_run": 12, "stopped_reason": "patience", "train_seconds": 50.0}]}
    lines = safety_stops(evaluation)
    assert len(lines) == 1 and lines[0].startswith("caser was stopped by the safety time budget")
    summary = {"ds": "2026-11-27", "checks": {"raw_events": {}, "features": {}}, "feature_stats": {},
               "evaluation": evaluation, "decision": {},
               "outputs": {}, "stage_seconds": {}, "tracking_uri": "x", "summary_file": "s", "report": "r"}
    text = format_run_summary(summary)
    assert "epochs: caser 3 (time_budget), sasrec 12 (patience)" in text and "warn: caser was stopped" in text
