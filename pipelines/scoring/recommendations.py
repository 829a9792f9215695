"""Batch scoring: the champion's top-K items for every active user, and an audience for every campaign.

Both are written as the day's partition (``outputs/recommendations/dt=<ds>``, ``outputs/audiences/dt=<ds>``)
from one pass of the model over the users. A campaign's audience is the ``scoring.audience_size`` users
the champion finds likeliest to go next to one of the campaign's items (the softmax probability of
the items its ads showed in the window, ``features/.../campaign_items``), best first.

Business rules (``scoring.rules``, ``scoring.campaigns``; see ``pipelines.scoring.rules``) shape every
list before its top-K: purchased items, the day's catalog (``raw/catalog/dt=<ds>/`` when the shop lands
one: available, in stock), excluded categories, a price range, a cap per category, and campaigns'
boosted or required items. What each rule removed is recorded beside the lists
(``outputs/recommendations/dt=<ds>/_rules.json``). Each campaign's audience lift is measured on the
day held out (``pipelines.scoring.lift``) and recorded beside the audiences (``_lift.json``).

The champion is the day's (``registry.champion.champion_as_of``): a backfill of an earlier day
scores with the model that was champion as of that day, as its nightly run did, never with a later one.
Item ids are append-only, so a champion trained on an earlier night knows a prefix of the day's items:
the items new since then score -inf for it (never listed, no share of an audience's probability). A
champion whose ids are numbered otherwise (another shop's, a rebuilt vocabulary) would name the wrong
items: the task stops with ``ChampionVocabularyError`` and what to do.

Above ``scoring.spark_above_users`` scored users the champion's two passes (the lists with the
affinities, the lift's held-out histories) run on Spark executors (``pipelines.scoring.distributed``),
with the same results; below it, and for the popularity fallback, in the task's process.

Before any model has passed the promotion gate (a new shop, a sample too small to train on), the
``scoring.without_champion`` setting decides: ``popularity`` (the default) writes the window's most
popular items the user has not bought, with ``model_version`` = ``popularity-fallback`` so that
consumers and the run report see it is not a trained model (no audiences: popularity ranks every
user alike); ``fail`` stops the task instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines.config import PipelineConfig
from pipelines.features.store import load_feature_partition
from pipelines.io import atomic_partition, write_json_atomic
from pipelines.lake import PART_FILE, partition_path
from pipelines.registry.champion import champion_as_of, load_registered_model
from pipelines.registry.store import configure_mlflow
from pipelines.scoring.audiences import audience_table, campaign_affinity, campaign_items
from pipelines.scoring.catalog import read_catalog
from pipelines.scoring.lift import measure_lift
from pipelines.scoring.rules import RuleCounts, item_facts, plan_rules, ranked_top_k
from pipelines.training.evaluation import vocabulary_mismatch
from pipelines.training.splits import build_day_splits

log = logging.getLogger(__name__)


POPULARITY_FALLBACK = "popularity-fallback"  # model_version of recommendations written without a champion


class ChampionVocabularyError(RuntimeError):
    """The champion's item ids are not a prefix of the day's vocabulary (another shop, a rebuilt vocabulary)."""


class NoChampionError(RuntimeError):
    """Scoring was asked for before any model passed the promotion gate (with ``without_champion: fail``)."""


def write_recommendations(config: PipelineConfig, ds: str,
                          spark_master: Callable[[], str] | None = None) -> dict[str, Any]:
    """Top-K per user of the day's features, excluding items the user already bought (see the module doc).

    ``spark_master`` gives the Spark master to score on when the day has more than
    ``scoring.spark_above_users`` users (default ``local[*]``); below that, no Spark is started.
    """
    # pipelines.models imports Keras: only when scoring, not when the summary reads POPULARITY_FALLBACK
    from pipelines.models.metrics import popularity_scorer, popularity_scores
    from pipelines.models.training import score_over_vocab

    started = time.perf_counter()
    configure_mlflow(config)
    champion = champion_as_of(config, ds)  # the day's champion, also in a backfill
    if champion is None and config.scoring.without_champion == "fail":
        raise NoChampionError(
            f"no model version carries the alias '{config.promotion.champion_alias}' of "
            f"'{config.promotion.registered_model}' yet, so there is nothing to score {ds} with; "
            "see the promote_champion task log for why no candidate passed the gate, or set "
            "scoring.without_champion: popularity to write popularity recommendations meanwhile")
    features = load_feature_partition(config.layout.features, ds)
    splits = build_day_splits(config, features)
    scored = features.sequences.take(splits.kept_rows)  # users with enough history to score
    purchased = [np.asarray(items, dtype=np.int64) for items in scored.column(C.PURCHASED_ITEMS).to_pylist()]
    top_k = min(config.scoring.top_k, features.num_items)
    campaigns, campaign_matrix = campaign_items(features.path, features.num_items)
    if champion is None:
        log.warning("recommendations %s: no champion yet (no candidate has passed the gate); writing the "
                    "window's popularity, model_version=%s, and no audiences", ds, POPULARITY_FALLBACK)
        popularity = popularity_scores(features.sequences.column(C.ITEM_SEQ), features.num_items)
        score_batch, version, model_name = popularity_scorer(popularity), POPULARITY_FALLBACK, "popularity"
        campaigns, campaign_matrix = [], campaign_matrix[:, :0]
    else:
        _check_vocabulary(config, champion, features)
        model = load_registered_model(champion)  # new items since its training score -inf: never listed
        score_batch = partial(score_over_vocab, model, num_items=features.num_items,
                              batch_size=config.scoring.batch_size)
        version, model_name = str(champion.version), champion.tags.get("pipeline.model")
    catalog = read_catalog(partition_path(config.layout.catalog, ds))
    plan = plan_rules(config.scoring.rules, config.scoring.campaigns, item_facts(features.vocab, catalog),
                      campaigns, campaign_matrix)
    counts = RuleCounts()
    size = audience_size(config, int(scored.num_rows))
    lift_of = partial(measure_lift, features.path, scored, features.vocab, score_batch, splits.max_len,
                      campaign_matrix=campaign_matrix, size=size, seed=config.scoring.lift_seed,
                      sequence_event_types=config.features.sequence_event_types, ds=ds,
                      batch_size=config.scoring.batch_size)
    above = config.scoring.spark_above_users
    engine = "spark" if champion is not None and above is not None and scored.num_rows > above else "process"
    if engine == "spark":  # the same passes, over executors (pipelines.scoring.distributed)
        from pipelines.scoring.distributed import SparkScorer, scoring_session

        master = spark_master() if spark_master else "local[*]"
        log.info("recommendations %s: %s users > scoring.spark_above_users=%s: scoring on Spark (%s)",
                 ds, scored.num_rows, above, master)
        with scoring_session(master, ds, config.spark.driver_memory, config.spark.jvm_conf()) as spark:
            scorer = SparkScorer(spark, model, features.num_items, config.scoring.batch_size)
            items, scores, affinity = scorer.ranked_top_k(splits.inputs("full"), top_k, plan, purchased, counts,
                                                          campaign_matrix)
            lift = lift_of(campaigns=campaigns if len(affinity) else [],
                           affinities=partial(scorer.affinities, campaign_matrix=campaign_matrix))
    else:
        tapped: list[np.ndarray] = []  # [batch, campaigns] probability of a campaign item next

        def scored_and_tapped(batch: dict[str, np.ndarray]) -> np.ndarray:
            scores = score_batch(batch)
            if campaigns:
                tapped.append(campaign_affinity(scores, campaign_matrix))
            return scores

        items, scores = ranked_top_k(scored_and_tapped, splits.inputs("full"), features.num_items, top_k, plan,
                                     purchased, counts, batch_size=config.scoring.batch_size)
        affinity = np.concatenate(tapped) if tapped else np.zeros((0, len(campaigns)), np.float32)
        lift = lift_of(campaigns=campaigns if tapped else [])
    table = _recommendation_table(scored, features.vocab, items, scores, version)
    rules_record = {"ds": ds, "top_k": top_k, "catalog": catalog is not None, "removed": plan.removed,
                    "counts": counts.as_dict(), "notes": plan.notes}
    target = partition_path(config.layout.recommendations, ds)
    with atomic_partition(target) as staging:
        fs.write_parquet(table, staging / PART_FILE)
        write_json_atomic(staging / config.layout.rules_record(ds).name, rules_record)
    audiences = audience_table(scored, campaigns if len(affinity) else [], affinity, size, version)
    audiences_target = partition_path(config.layout.audiences, ds)
    with atomic_partition(audiences_target) as staging:
        fs.write_parquet(audiences, staging / PART_FILE)
        write_json_atomic(staging / config.layout.lift_record(ds).name, lift)
    summary = {"ds": ds, "path": str(target), "users": int(scored.num_rows),
               "rows": int(table.num_rows), "top_k": top_k, "model_version": version,
               "model": model_name, "fallback": champion is None, "engine": engine,
               "audiences": {"path": str(audiences_target), "campaigns": len(campaigns),
                             "rows": int(audiences.num_rows), "size": size},
               "rules": {"removed": plan.removed, **counts.as_dict()},
               "lift": {name: row["lift_over_random"] for name, row in lift["campaigns"].items()},
               "seconds": round(time.perf_counter() - started, 2)}
    log.info("recommendations %s: %s rows for %s users by %s (version %s) at %s; audiences of %s campaigns at %s",
             ds, summary["rows"], summary["users"], model_name, version, target, len(campaigns), audiences_target)
    return summary


def _check_vocabulary(config: PipelineConfig, champion, features) -> None:
    """Stop when the champion numbers items otherwise than the day's vocabulary: its lists would name wrong items.

    A version without ``pipeline.vocab_version`` (registered before lineage tags) cannot be checked and is scored.
    """
    vocab_version = champion.tags.get("pipeline.vocab_version")
    mismatch = vocabulary_mismatch(config, vocab_version, features) if vocab_version else None
    if mismatch:
        raise ChampionVocabularyError(
            f"the champion of {features.ds} (version {champion.version} of '{config.promotion.registered_model}') "
            f"cannot score this day: {mismatch}. Its item ids would name other items. Roll the champion back "
            "to a version trained on this lake (make rollback, or the champion_rollback DAG) or promote a "
            "candidate of tonight, then clear score_users")


def audience_size(config: PipelineConfig, active_users: int) -> int:
    """Users per campaign audience: ``scoring.audience_share`` of the day's active users, else ``audience_size``."""
    if config.scoring.audience_share is not None:
        return max(1, round(config.scoring.audience_share * active_users))
    return config.scoring.audience_size


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
