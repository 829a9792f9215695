"""Batch scoring: the champion's top-K items for every active user, written as the day's partition."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.feature_store import load_feature_partition
from pipelines.io import atomic_partition, partition_path

log = logging.getLogger(__name__)


class NoChampionError(RuntimeError):
    """Scoring was asked for before any model passed the promotion gate."""


def write_recommendations(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Top-K per user of the day's features, excluding items the user already bought."""
    from pipelines.candidates import build_day_splits
    from pipelines.models.training import top_k_items
    from pipelines.promotion import current_champion, load_registered_model
    from pipelines.tracking import configure_mlflow

    started = time.perf_counter()
    configure_mlflow(config)
    champion = current_champion(config)
    if champion is None:
        raise NoChampionError(
            f"no model version carries the alias '{config.promotion.champion_alias}' of "
            f"'{config.promotion.registered_model}' yet, so there is nothing to score {ds} with; "
            "see the promote_champion task log for why no candidate passed the gate")
    model = load_registered_model(champion)
    features = load_feature_partition(config.layout.features, ds)
    splits = build_day_splits(config, features)
    scored = features.sequences.take(splits.kept_rows)  # users with enough history to score
    purchased = [np.asarray(items, dtype=np.int64) for items in scored.column(C.PURCHASED_ITEMS).to_pylist()]
    items, scores = top_k_items(model, splits.inputs("full"), config.scoring.top_k, exclude=purchased,
                                batch_size=config.scoring.batch_size)
    table = _recommendation_table(scored, features.vocab, items, scores, str(champion.version))
    target = partition_path(config.layout.recommendations, ds)
    with atomic_partition(target) as staging:
        pq.write_table(table, staging / "part-00000.parquet")
    summary = {"ds": ds, "path": str(target), "users": int(scored.num_rows),
               "rows": int(table.num_rows), "top_k": config.scoring.top_k, "model_version": str(champion.version),
               "model": champion.tags.get("pipeline.model"), "seconds": round(time.perf_counter() - started, 2)}
    log.info("recommendations %s: %s rows for %s users by model version %s at %s", ds, summary["rows"],
             summary["users"], champion.version, target)
    return summary


def _recommendation_table(users: pa.Table, vocab: pa.Table, items: np.ndarray, scores: np.ndarray,
                          version: str) -> pa.Table:
    n_users, k = items.shape  # items, scores: [n_users, k]
    item_ids = np.asarray(vocab.column(C.ITEM_ID).to_pylist(), dtype=object)
    lookup = np.concatenate([[None], item_ids])  # ITEM_IDX is 1-based; 0 is padding
    valid = items > 0
    user_keys = np.repeat(np.asarray(users.column(C.USER_KEY).to_pylist(), dtype=object), k)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), n_users)
    flat_items = items.reshape(-1)
    keep = valid.reshape(-1)
    return pa.table({
        C.USER_KEY: pa.array(user_keys[keep], pa.string()),
        C.RANK: pa.array(ranks[keep], pa.int32()),
        C.ITEM_IDX: pa.array(flat_items[keep].astype(np.int32), pa.int32()),
        C.ITEM_ID: pa.array(lookup[np.minimum(flat_items[keep], len(item_ids))], pa.string()),
        C.SCORE: pa.array(scores.reshape(-1)[keep].astype(np.float32), pa.float32()),
        C.MODEL_VERSION: pa.array([version] * int(keep.sum()), pa.string()),
    })
