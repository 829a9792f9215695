"""Broken inputs a stage must refuse loudly: a truncated Parquet file, a short partition, a store gone."""

from __future__ import annotations

import json

import pytest

from pipelines import lake
from pipelines.features.store import FeaturesMissingError, load_feature_partition
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path
from tests.faults.harness import lake_config
from tests.trained_registry import DS, N_ITEMS, N_USERS, write_features

pytestmark = pytest.mark.faults


def test_a_truncated_parquet_file_is_named_never_read_short(tmp_path):
    root = tmp_path / "features"
    write_features(root, DS)
    [part] = (partition_path(root, DS) / lake.SEQUENCES).glob("*.parquet")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(FeaturesMissingError, match=rf"{part}: cannot be read .*damaged. Rerun the build_features"):
        load_feature_partition(root, DS)


def test_a_partition_with_fewer_rows_than_its_stats_is_refused(tmp_path):
    root = tmp_path / "features"
    write_features(root, DS)
    stats = partition_path(root, DS) / lake.FEATURE_STATS
    write_json_atomic(stats, {**json.loads(stats.read_text()), "users_with_sequences": N_USERS + 5,
                              "items": N_ITEMS})
    with pytest.raises(FeaturesMissingError, match=rf"{N_USERS} rows but _stats.json recorded {N_USERS + 5}"):
        load_feature_partition(root, DS)


def test_a_tracking_store_that_is_garbage_keeps_the_champion(tmp_path):
    from pipelines.registry.gate import promote_champion

    config = lake_config(tmp_path)
    config.layout.mlflow_dir.mkdir(parents=True)
    (config.layout.mlflow_dir / "mlflow.db").write_bytes(b"not a database" * 100)  # a broken or foreign store
    test = {"hr_at_10": 0.5, "ndcg_at_10": 0.4}
    evaluation = {"metric": "ndcg_at_10", "popularity": {"hr_at_10": 0.1, "ndcg_at_10": 0.1}, "champion": None,
                  "candidates": [{"model": "sasrec", "version": "1", "run_id": "0" * 32, "test": test}]}
    decision = promote_champion(config, DS, evaluation)
    assert not decision["promoted"] and "cannot be reached" in decision["verdict"] and "fail closed" in decision["verdict"]
