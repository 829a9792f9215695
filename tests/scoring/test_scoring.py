"""Batch scoring and campaign audiences from the champion (or labelled popularity before there is one)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.lake import partition_path
from tests.trained_registry import (
    DS,
    N_ITEMS,
    promote,
    write_features,
)


def test_without_a_champion_scoring_writes_labelled_popularity_or_fails_as_configured(fresh):
    from pipelines.scoring.recommendations import POPULARITY_FALLBACK, NoChampionError, write_recommendations

    config, weak, strong = fresh
    summary = write_recommendations(config, DS)
    assert summary["fallback"] and summary["model_version"] == POPULARITY_FALLBACK
    assert summary["audiences"]["rows"] == 0  # popularity ranks every user alike: no audiences
    recs = pq.read_table(summary["path"])
    assert set(recs.column(C.MODEL_VERSION).to_pylist()) == {POPULARITY_FALLBACK}
    counts = np.bincount(pq.read_table(partition_path(config.layout.features, DS) / lake.SEQUENCES)
                         .column(C.ITEM_SEQ).combine_chunks().values.to_numpy(), minlength=N_ITEMS + 1)
    firsts = recs.filter(pc.equal(recs.column(C.RANK), 1)).column(C.ITEM_IDX).to_numpy()
    assert (counts[firsts] == counts[1:].max()).all()  # everyone's first pick is a most popular item
    failing = config.model_copy(update={"scoring": config.scoring.model_copy(update={"without_champion": "fail"})})
    with pytest.raises(NoChampionError, match="without_champion: popularity"):
        write_recommendations(failing, DS)
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    assert write_recommendations(config, DS)["model_version"] == weak["version"]


def test_campaign_audiences_are_the_users_the_champion_expects_next_on_the_campaign_items(fresh):
    from pipelines.scoring.audiences import AFFINITY
    from pipelines.scoring.recommendations import write_recommendations

    config, weak, strong = fresh
    promote(config, strong)
    config = config.model_copy(update={"scoring": config.scoring.model_copy(update={"audience_size": 8})})
    summary = write_recommendations(config, DS)
    assert summary["audiences"]["campaigns"] == 2 and summary["audiences"]["rows"] == 16
    audiences = pq.read_table(summary["audiences"]["path"]).to_pylist()
    sequences = pq.read_table(partition_path(config.layout.features, DS) / lake.SEQUENCES).to_pylist()
    last_item = {row[C.USER_KEY]: row[C.ITEM_SEQ][-1] for row in sequences}
    walk = [row for row in audiences if row[C.CAMPAIGN] == "walk-5-7"]
    assert [row[C.RANK] for row in walk] == list(range(1, 9))
    assert [row[AFFINITY] for row in walk] == sorted((row[AFFINITY] for row in walk), reverse=True)
    # users walk the catalogue (item i, then i + 1): those who stopped at 4, 5 or 6 go next to 5, 6 or 7
    hits = sum(last_item[row[C.USER_KEY]] in (4, 5, 6) for row in walk)
    assert hits >= 6, [last_item[row[C.USER_KEY]] for row in walk]
    assert {row[C.MODEL_VERSION] for row in audiences} == {strong["version"]}
    assert pq.read_table(summary["audiences"]["path"]).equals(
        pq.read_table(write_recommendations(config, DS)["audiences"]["path"]))  # a rerun writes the same


def test_a_champion_older_than_the_days_new_items_scores_the_day_without_listing_them(fresh):
    """Item ids are append-only: a champion of yesterday knows a prefix of today's items (the nightly case
    of a rejected challenger, and of a backfill's day scored with that day's champion)."""
    from pipelines.dates import shift
    from pipelines.scoring.recommendations import ChampionVocabularyError, write_recommendations

    config, weak, strong = fresh
    promote(config, strong)
    later = shift(DS, 1)
    write_features(config.layout.features, later, n_items=N_ITEMS + 3)  # three items new since training
    try:
        summary = write_recommendations(config, later)
        recs = pq.read_table(summary["path"])
        assert summary["model_version"] == strong["version"] and summary["users"] > 0
        assert recs.num_rows == summary["users"] * summary["top_k"]  # full lists from the items it knows
        assert pc.max(recs.column(C.ITEM_IDX)).as_py() <= N_ITEMS
        assert summary["audiences"]["rows"] > 0
        # the same item ids numbered otherwise (another shop, a rebuilt vocabulary): it stops and says what to do
        vocab = partition_path(config.layout.features, later) / lake.ITEM_VOCAB / "p.parquet"
        table = pq.read_table(vocab)
        pq.write_table(table.set_column(0, C.ITEM_ID, pa.array(table.column(C.ITEM_ID).to_pylist()[::-1])), vocab)
        with pytest.raises(ChampionVocabularyError, match=r"not numbered as today's .*\(make rollback"):
            write_recommendations(config, later)
    finally:  # the session registry is shared: leave only its own day
        for root in (config.layout.features, config.layout.recommendations, config.layout.audiences):
            shutil.rmtree(partition_path(root, later), ignore_errors=True)
