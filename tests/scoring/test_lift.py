"""The audience lift, held out on the day: histories without the day, responses, rates against baselines."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines import lake
from pipelines.scoring.lift import holdout_histories, measure_lift

DAY = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
VOCAB = pa.table({C.ITEM_ID: [f"I{i}" for i in range(1, 9)], C.ITEM_IDX: pa.array(range(1, 9), pa.int32())})
SEQUENCE_TYPES = [C.PRODUCT_VIEW, C.ADD_TO_CART, C.PURCHASE]


def _events(rows):
    return pa.table({C.USER_KEY: [r[0] for r in rows], C.EVENT_TIME: [DAY + dt.timedelta(minutes=n) for n in
                                                                     range(len(rows))],
                     C.EVENT_ID: [f"e{n:03d}" for n in range(len(rows))], C.EVENT_TYPE: [r[1] for r in rows],
                     C.ITEM_ID: [r[2] for r in rows]})


def test_the_days_items_are_cut_from_the_tail_with_repeats_collapsed_and_impressions_are_no_response():
    sequences = pa.table({C.USER_KEY: ["a", "b", "c"],
                          C.ITEM_SEQ: pa.array([[1, 2, 3, 4], [5, 6], [7, 8, 1]], pa.list_(pa.int32()))})
    events = _events([("a", C.PRODUCT_VIEW, "I3"), ("a", C.PRODUCT_VIEW, "I3"), ("a", C.ADD_TO_CART, "I4"),
                      ("b", C.AD_IMPRESSION, "I6"), ("c", C.AD_CLICK, "I2"), ("c", C.SEARCH, None)])
    histories, responded = holdout_histories(sequences, events, VOCAB, SEQUENCE_TYPES)
    assert [h.tolist() for h in histories] == [[1, 2], [5, 6], [7, 8, 1]]  # b and c added no sequence item today
    assert responded == {"a": {3, 4}, "c": {2}}  # b only saw an ad: not a response


def test_an_audience_that_knows_who_responds_lifts_over_random_and_most_active(tmp_path):
    users = [f"u{n:02d}" for n in range(40)]
    responders = set(users[:10])  # their history holds item 1; today they view campaign item 5
    sequences = pa.table({
        C.USER_KEY: users, C.USER_BUCKET: pa.array(range(40), pa.int32()),
        C.ITEM_SEQ: pa.array([([1, 2] if u in responders else [2, 3, 4, 2, 3]) + ([5] if u in responders else [])
                              for u in users], pa.list_(pa.int32()))})
    (tmp_path / lake.CLEAN_EVENTS).mkdir()
    pq.write_table(_events([(u, C.PRODUCT_VIEW, "I5") for u in sorted(responders)]),
                   tmp_path / lake.CLEAN_EVENTS / "part.parquet")
    matrix = np.zeros((9, 1), np.float32)
    matrix[[5, 6], 0] = 1.0

    def oracle(batch):  # high scores on the campaign's items for histories that hold item 1
        scores = np.zeros((len(batch["items"]), 9), np.float32)
        scores[(batch["items"] == 1).any(axis=1), 5] = 10.0
        return scores

    lift = measure_lift(tmp_path, sequences, VOCAB, oracle, max_len=4, campaigns=["spring"], campaign_matrix=matrix,
                        size=10, seed=3, sequence_event_types=SEQUENCE_TYPES, ds="2026-11-27")
    row = lift["campaigns"]["spring"]
    assert row["model_rate"] == 1.0 and row["most_active_rate"] == 0.0  # the most active never respond here
    assert row["random_rate"] < 1.0 and row["lift_over_random"] == 1.0 / row["random_rate"] > 1.0
    assert row["lift_over_most_active"] is None and row["base_rate"] == 0.25
    again = measure_lift(tmp_path, sequences, VOCAB, oracle, max_len=4, campaigns=["spring"], campaign_matrix=matrix,
                         size=10, seed=3, sequence_event_types=SEQUENCE_TYPES, ds="2026-11-27")
    assert again == lift  # seeded: a rerun measures the same


def test_too_few_users_or_no_campaigns_say_why_instead_of_a_number(tmp_path):
    sequences = pa.table({C.USER_KEY: ["a"], C.USER_BUCKET: pa.array([0], pa.int32()),
                          C.ITEM_SEQ: pa.array([[1, 2]], pa.list_(pa.int32()))})
    assert "no campaigns" in measure_lift(tmp_path, sequences, VOCAB, None, 4, [], np.zeros((9, 0)), 5, 0,
                                          SEQUENCE_TYPES, "2026-11-27")["skipped"]
    (tmp_path / lake.CLEAN_EVENTS).mkdir()
    pq.write_table(_events([("a", C.PRODUCT_VIEW, "I1")]), tmp_path / lake.CLEAN_EVENTS / "p.parquet")
    skipped = measure_lift(tmp_path, sequences, VOCAB, None, 4, ["x"], np.zeros((9, 1)), 5, 0, SEQUENCE_TYPES,
                           "2026-11-27")["skipped"]
    assert "too few" in skipped


def test_the_audience_size_is_a_share_of_active_users_when_configured():
    from pipelines.config import load_config
    from pipelines.scoring.recommendations import audience_size

    assert audience_size(load_config({"scoring": {"audience_size": 300}}), 10_000) == 300
    assert audience_size(load_config({"scoring": {"audience_share": 0.05}}), 10_000) == 500  # the share wins
    assert audience_size(load_config({"scoring": {"audience_share": 0.0001}}), 100) == 1  # never empty
