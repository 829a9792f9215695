"""Scoring on Spark executors writes what scoring in the task's process writes (lists, rules, audiences, lift)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.lake import partition_path
from tests.trained_registry import DS, N_ITEMS, promote, write_features

pytestmark = pytest.mark.spark


def _a_day_with_purchases_and_held_out_events(config, ds: str) -> None:
    """The walk of ``write_features`` with purchases, three items new since training and the day's clean events."""
    write_features(config.layout.features, ds, n_items=N_ITEMS + 3)
    folder = partition_path(config.layout.features, ds)
    path = folder / lake.SEQUENCES / "p.parquet"
    sequences = pq.read_table(path)
    seqs = sequences.column(C.ITEM_SEQ).to_pylist()
    bought = [seq[:2] if row % 3 == 0 else [] for row, seq in enumerate(seqs)]  # a third bought what they saw first
    pq.write_table(sequences.set_column(sequences.schema.get_field_index(C.PURCHASED_ITEMS), C.PURCHASED_ITEMS,
                                        pa.array(bought, pa.list_(pa.int32()))), path)
    users, items, kinds, times = [], [], [], []
    for user, seq in zip(sequences.column(C.USER_KEY).to_pylist(), seqs, strict=True):
        for step, item in enumerate(seq[-2:]):  # the day's last two items: held out for the lift
            users.append(user), items.append(f"i{item}"), kinds.append(C.PRODUCT_VIEW), times.append(step)
    (folder / lake.CLEAN_EVENTS).mkdir()
    pq.write_table(pa.table({
        C.USER_KEY: users, C.EVENT_TIME: pa.array([1_700_000_000_000_000 + t for t in times], pa.timestamp("us", "UTC")),
        C.EVENT_ID: [f"e{n}" for n in range(len(users))], C.EVENT_TYPE: kinds, C.ITEM_ID: items,
    }), folder / lake.CLEAN_EVENTS / "p.parquet")


def test_scoring_on_spark_writes_what_scoring_in_one_process_writes(fresh, spark):
    from pipelines.config import CampaignRuleConfig
    from pipelines.dates import shift
    from pipelines.scoring.audiences import AFFINITY
    from pipelines.scoring.recommendations import write_recommendations

    config, weak, strong = fresh
    promote(config, strong)
    day = shift(DS, 2)
    _a_day_with_purchases_and_held_out_events(config, day)
    scoring = config.scoring.model_copy(update={
        "audience_size": 8, "batch_size": 16,  # several batches in each Spark partition, and in one process
        "campaigns": {"walk-5-7": CampaignRuleConfig(boost=0.5, required=1)},
    })
    in_process = config.model_copy(update={"scoring": scoring.model_copy(update={"spark_above_users": None})})
    on_spark = config.model_copy(update={"scoring": scoring.model_copy(update={"spark_above_users": 0})})
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "25")  # several Arrow batches a partition
    written = {}
    try:
        for name, variant in (("process", in_process), ("spark", on_spark)):
            summary = write_recommendations(variant, day)
            assert summary["engine"] == name
            folder, audiences = partition_path(config.layout.recommendations, day), summary["audiences"]["path"]
            written[name] = {
                "summary": summary,
                "lists": pq.read_table(summary["path"]),
                "rules": json.loads(config.layout.rules_record(day).read_text()),
                "audiences": pq.read_table(audiences),
                "lift": json.loads((partition_path(config.layout.audiences, day) /
                                    config.layout.lift_record(day).name).read_text()),
            }
            assert folder.is_dir()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
        for root in (config.layout.features, config.layout.recommendations, config.layout.audiences):
            shutil.rmtree(partition_path(root, day), ignore_errors=True)
    one, other = written["process"], written["spark"]
    assert one["summary"]["users"] == 240 and one["summary"]["rules"]["purchased_removed"] > 0
    assert one["summary"]["rules"]["required_added"] >= 0 and one["lift"]["campaigns"], one["lift"]
    for column in (C.USER_KEY, C.RANK, C.ITEM_IDX, C.ITEM_ID, C.MODEL_VERSION):
        assert one["lists"].column(column).equals(other["lists"].column(column)), column
    np.testing.assert_allclose(one["lists"].column(C.SCORE).to_numpy(), other["lists"].column(C.SCORE).to_numpy(),
                               rtol=1e-5, atol=1e-6)  # float32 batches of other rows: last bits
    assert one["rules"] == other["rules"]  # every rule counter, summed over the executors' batches
    assert one["summary"]["rules"] == other["summary"]["rules"]
    for column in (C.CAMPAIGN, C.USER_KEY, C.RANK):
        assert one["audiences"].column(column).equals(other["audiences"].column(column)), column
    np.testing.assert_allclose(one["audiences"].column(AFFINITY).to_numpy(),
                               other["audiences"].column(AFFINITY).to_numpy(), rtol=1e-5, atol=1e-6)
    assert one["lift"] == other["lift"]  # the held-out pass, on the executors too


def test_a_spark_job_that_loses_users_is_refused():
    from pipelines.scoring.distributed import _order

    with pytest.raises(RuntimeError, match="returned 2 rows for 3 users"):
        _order(pa.table({"row": pa.array([0, 2], pa.int64())}), 3)
    with pytest.raises(RuntimeError, match="each exactly once"):
        _order(pa.table({"row": pa.array([0, 0, 2], pa.int64())}), 3)
    assert _order(pa.table({"row": pa.array([2, 0, 1], pa.int64())}), 3).tolist() == [1, 2, 0]


def test_list_columns_of_any_width_go_out_and_come_back_whole():
    """A day without campaigns has affinities of width 0; the model inputs are [users, max_len]."""
    from pipelines.scoring.distributed import _batch_inputs, _fixed, _input_table, _lists

    for width in (0, 1, 5):
        flat = np.arange(3 * width, dtype=np.float32)
        lists = _lists(flat, 3, width, pa.float32())
        assert len(lists) == 3 and lists.to_pylist() == [flat[i * width:(i + 1) * width].tolist() for i in range(3)]
        np.testing.assert_array_equal(_fixed(pa.chunked_array([lists]), width, np.float32), flat.reshape(3, width))
    inputs = {"items": np.arange(12, dtype=np.int32).reshape(4, 3), "user": np.array([7, 8, 9, 10], np.int32)}
    table = _input_table(inputs, [np.array([1]), np.array([], np.int64), np.array([2, 3]), np.array([4])])
    back = _batch_inputs(table.to_batches()[0], {"items": (3,), "user": ()})
    assert all(np.array_equal(back[key], inputs[key]) for key in inputs)
    assert table.column("purchased").to_pylist() == [[1], [], [2, 3], [4]]
