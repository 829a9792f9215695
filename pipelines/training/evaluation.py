"""The ``evaluate_candidates`` stage: every candidate beside popularity and the champion, on one test split.

The champion as of the day (``registry.champion.champion_as_of``; in a backfill of an earlier day
not today's champion) is re-scored on the day's split (items newer than it score -inf), so the
gate compares like with like. A champion trained on another item vocabulary (another shop's, or one
rebuilt since) is not comparable: it is reported as such, and the gate treats it as absent. A
champion that cannot be loaded is reported, and the gate fails closed.

Each candidate is re-scored from its registered version, and the per-user NDCG@k of candidate,
popularity and champion give a paired bootstrap interval of the candidate's lift over each
(``evidence``): the gate promotes only when the interval's lower bound clears the margin.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.features.store import FeaturePartition, load_feature_partition
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path
from pipelines.models.metrics import (
    bootstrap_lift,
    metrics_from_ranks,
    ndcg_gains,
    popularity_scorer,
    split_ranks,
)
from pipelines.registry.champion import champion_as_of, load_registered_model
from pipelines.registry.store import configure_mlflow
from pipelines.training.candidates import TAG_MODEL
from pipelines.training.splits import day_splits

log = logging.getLogger(__name__)


def evaluate_candidates(config: PipelineConfig, ds: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Popularity and the current champion on the same test split as the candidates, with the evidence."""
    started = time.perf_counter()
    features = load_feature_partition(config.layout.features, ds)
    splits = day_splits(config, features)
    k = config.evaluation.k
    popularity = splits.train_item_counts.astype(np.float32)  # popularity_scores of the training parts
    popularity_ranks, _ = split_ranks(popularity_scorer(popularity), splits, "test")
    baseline = {**metrics_from_ranks(popularity_ranks, k), "non_finite_rows": 0}
    configure_mlflow(config)
    champion, champion_ranks = _score_champion(config, ds, splits, features)
    gains = {"popularity": ndcg_gains(popularity_ranks, k),
             **({"champion": ndcg_gains(champion_ranks, k)} if champion_ranks is not None else {})}
    scored = [{**c, "evidence": _evidence(config, c, splits, features.num_items, gains)}
              for c in sorted(candidates, key=lambda c: c["model"])]
    evaluation = {"ds": ds, "k": k, "metric": f"ndcg_at_{k}", "num_test_users": int(splits.num_users),
                  "popularity": baseline, "champion": champion, "candidates": scored,
                  "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(config.layout.evaluation_record(ds), evaluation)
    log.info("evaluation %s: popularity %s; champion %s; candidates %s", ds, baseline,
             champion and (champion.get("test") or champion.get("error") or champion.get("not_comparable")),
             {c["model"]: (c["test"], c["evidence"]) for c in scored})
    return evaluation


def _evidence(config: PipelineConfig, candidate: dict[str, Any], splits, num_items: int,
              gains: dict[str, np.ndarray]) -> dict[str, Any]:
    """The candidate's lift over popularity (and the champion) with its bootstrap interval, from its version."""
    from mlflow import MlflowClient

    from pipelines.models.training import score_items

    promotion, k = config.promotion, config.evaluation.k
    try:
        model = load_registered_model(MlflowClient().get_model_version(promotion.registered_model,
                                                                      candidate["version"]))
    except Exception as err:  # noqa: BLE001 - no evidence: the gate fails closed on it
        return {"error": f"version {candidate['version']} cannot be re-scored ({err})"}
    ranks, _ = split_ranks(lambda batch: score_items(model, batch, config.scoring.batch_size), splits, "test")
    mine = ndcg_gains(ranks, k)
    return {name: bootstrap_lift(mine, baseline, promotion.bootstrap_resamples, promotion.confidence,
                                 seed=config.training.seed) for name, baseline in gains.items()}


def _score_champion(config: PipelineConfig, ds: str, splits, features: FeaturePartition
                    ) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """Re-score the champion as of ``ds`` (the bar its gate compares against) on the day's split:
    (its record, per-user ranks); (None, None) without one. A backfill of an earlier day never
    compares against a champion trained on later data, which holds that day's test targets.
    """
    from pipelines.models.training import score_over_vocab

    champion = champion_as_of(config, ds)
    if champion is None:
        return None, None
    identity = {"version": str(champion.version), "model": champion.tags.get(TAG_MODEL)}
    try:
        model = load_registered_model(champion)
    except Exception as err:  # noqa: BLE001 - a broken champion must not stop the day; the gate fails closed
        log.error("champion version %s cannot be loaded: %s", champion.version, err)
        return {**identity, "error": str(err)}, None
    vocab_version = champion.tags.get("pipeline.vocab_version")
    if not vocab_version:  # cannot tell whether it is comparable: the gate fails closed
        return {**identity, "error": "it records no vocabulary version (pipeline.vocab_version)"}, None
    mismatch = vocabulary_mismatch(config, vocab_version, features)
    if mismatch:
        log.warning("champion version %s is not comparable with today's candidates: %s", champion.version, mismatch)
        return {**identity, "not_comparable": f"{mismatch}; treated as absent, the candidates are compared "
                                               "with popularity only"}, None
    # the champion may predate today's new items: they score -inf for it
    score = partial(score_over_vocab, model, num_items=features.num_items, batch_size=config.scoring.batch_size)
    ranks, non_finite = split_ranks(score, splits, "test")
    return {**identity, "test": {**metrics_from_ranks(ranks, config.evaluation.k), "non_finite_rows": non_finite}}, ranks


def vocabulary_mismatch(config: PipelineConfig, vocab_version: str, features: FeaturePartition) -> str | None:
    """Why a model trained on the vocabulary of ``vocab_version`` cannot be compared today (None: it can).

    Item ids are append-only within one lake, so a comparable model's vocabulary is a prefix of
    today's: the same item at every index it knows.
    """
    folder = partition_path(config.layout.features, vocab_version) / lake.ITEM_VOCAB
    if not fs.is_dir(folder):
        return f"its vocabulary ({folder}) is not in this lake: a model of another shop or of a deleted history"
    theirs = fs.read_parquet(folder, columns=[C.ITEM_ID, C.ITEM_IDX]).sort_by(C.ITEM_IDX)
    ours = features.vocab.select([C.ITEM_ID, C.ITEM_IDX]).slice(0, theirs.num_rows)
    if theirs.num_rows > features.num_items or not theirs.equals(ours.cast(theirs.schema)):
        return (f"its {theirs.num_rows} items (vocabulary of {vocab_version}) are not numbered as today's "
                f"{features.num_items}: another shop or a rebuilt vocabulary")
    return None
