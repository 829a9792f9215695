"""The ``evaluate_candidates`` stage: every candidate beside popularity and the champion, on one test split.

The current champion is re-scored on today's split (items newer than it score -inf), so the gate
compares like with like; a champion that cannot be loaded is reported, and the gate fails closed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.features.store import load_feature_partition
from pipelines.io import write_json_atomic
from pipelines.models.metrics import evaluate_full_ranking, popularity_scorer, popularity_scores
from pipelines.registry.champion import current_champion, load_registered_model
from pipelines.registry.store import configure_mlflow
from pipelines.training.candidates import TAG_MODEL
from pipelines.training.splits import build_day_splits

log = logging.getLogger(__name__)


def evaluate_candidates(config: PipelineConfig, ds: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Popularity and the current champion on the same test split as the candidates."""
    started = time.perf_counter()
    features = load_feature_partition(config.layout.features, ds)
    splits = build_day_splits(config, features)
    k = config.evaluation.k
    popularity = popularity_scores(splits.train_sequences, features.num_items)
    baseline = evaluate_full_ranking(popularity_scorer(popularity), splits.inputs("test"), splits.test_targets, k=k)
    champion = _score_champion(config, splits, features.num_items)
    evaluation = {"ds": ds, "k": k, "metric": f"ndcg_at_{k}", "num_test_users": int(len(splits.test_targets)),
                  "popularity": baseline, "champion": champion,
                  "candidates": sorted(candidates, key=lambda c: c["model"]),
                  "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(config.layout.evaluation_record(ds), evaluation)
    log.info("evaluation %s: popularity %s; champion %s; candidates %s", ds, baseline,
             champion and (champion.get("test") or champion.get("error")), {c["model"]: c["test"] for c in candidates})
    return evaluation


def _score_champion(config: PipelineConfig, splits, num_items: int) -> dict[str, Any] | None:
    """Re-score the current champion on today's split, or None when there is no champion yet."""
    from pipelines.models.training import score_items

    configure_mlflow(config)
    champion = current_champion(config)
    if champion is None:
        return None
    try:
        model = load_registered_model(champion)
    except Exception as err:  # noqa: BLE001 - a broken champion must not stop the day; the gate fails closed
        log.error("champion version %s cannot be loaded: %s", champion.version, err)
        return {"version": str(champion.version), "model": champion.tags.get(TAG_MODEL), "error": str(err)}

    def score(batch):  # the champion may predate today's new items: they score -inf for it
        scores = score_items(model, batch, config.scoring.batch_size)
        padded = np.full((scores.shape[0], num_items + 1), -np.inf, dtype=np.float32)
        padded[:, : scores.shape[1]] = scores[:, : num_items + 1]
        return padded

    test = evaluate_full_ranking(score, splits.inputs("test"), splits.test_targets, k=config.evaluation.k)
    return {"version": str(champion.version), "model": champion.tags.get(TAG_MODEL), "test": test}
