"""A day too large to hold whole: training and the gate read it in chunks and get the whole day's figures.

``SplitChunks`` builds the leave-one-out splits chunk by chunk; these tests check that the chunks hold
exactly the whole day's rows, that validation, test metrics and the gate's evidence are the same
numbers either way, that an epoch over chunks yields every training row once, and that the stage
path (``train_candidate`` + ``evaluate_candidates`` with ``training.stream_above_users``) works on
the feature Parquet. The order-free content digest that lets the stages identify a day without
holding it is tested here too.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import columns as C
from pipelines import lake
from pipelines.features.content_digest import tables_digest
from pipelines.lake import partition_path
from pipelines.models import build_model
from pipelines.models.data import SplitChunks, build_splits, training_arrays, training_batches
from pipelines.models.metrics import (
    evaluate_full_ranking,
    evaluate_sampled,
    evaluate_split,
    evaluate_split_sampled,
)
from pipelines.models.training import TrainConfig, score_items, train_model
from tests.trained_registry import DS, gate_config, write_features

NUM_ITEMS, NUM_USERS, MAX_LEN, CHUNK = 30, 300, 20, 37


def _day():
    rng = np.random.default_rng(0)
    starts, lengths = rng.integers(0, NUM_ITEMS, NUM_USERS), rng.integers(1, 15, NUM_USERS)  # some too short
    seqs = pa.array([[(s + j) % NUM_ITEMS + 1 for j in range(n)] for s, n in zip(starts, lengths, strict=True)],
                    pa.list_(pa.int64()))
    return seqs, (np.arange(NUM_USERS) % 16).astype(np.int32)


def _chunks(chunk: int = CHUNK) -> SplitChunks:
    seqs, users = _day()
    return SplitChunks.scan(lambda: ((seqs.slice(i, chunk), users[i : i + chunk]) for i in range(0, NUM_USERS, chunk)),
                            NUM_ITEMS, MAX_LEN)


_WEIGHTS = np.random.default_rng(9).normal(size=(MAX_LEN, NUM_ITEMS + 1))


def _scorer(batch):  # each row's scores depend on that row only, so both paths can be compared exactly
    return np.sin(batch["items"].astype(np.float64) @ _WEIGHTS + batch["user"][:, None]).astype(np.float32)


def test_a_day_in_chunks_holds_exactly_the_whole_days_rows():
    whole, chunks = build_splits(*_day(), NUM_ITEMS, MAX_LEN), _chunks()
    parts = list(chunks.chunks())
    assert len(parts) == chunks.num_chunks == -(-NUM_USERS // CHUNK)
    for field in ("train_items", "valid_inputs", "valid_targets", "test_inputs", "test_targets", "full_inputs",
                  "users"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))
    assert chunks.num_users == whole.num_users and chunks.num_skipped_users == whole.num_skipped_users > 0
    np.testing.assert_array_equal(chunks.train_item_counts, whole.train_item_counts)
    assert chunks.user_range == whole.user_range == (0, 15)


def test_chunked_validation_and_test_give_the_whole_days_figures():
    whole, chunks = build_splits(*_day(), NUM_ITEMS, MAX_LEN), _chunks()
    for part in ("valid", "test"):
        expected = evaluate_full_ranking(_scorer, whole.inputs(part), whole.targets(part), 10, 64)
        assert evaluate_split(_scorer, chunks, part, 10, 64) == expected == evaluate_split(_scorer, whole, part, 10, 64)
    for max_users in (50, 10_000):  # a sample of the users (drawn across chunks), and all of them
        expected = evaluate_sampled(_scorer, whole.inputs("valid"), whole.valid_targets, whole.history,
                                    num_negatives=10, max_users=max_users, seed=3, batch_size=64, num_items=NUM_ITEMS)
        got = evaluate_split_sampled(_scorer, chunks, "valid", num_negatives=10, max_users=max_users, seed=3,
                                     batch_size=64)
        assert got == expected


@pytest.mark.parametrize("name", ["sasrec", "caser"])  # the sequence view and the window view
def test_an_epoch_over_chunks_yields_every_training_row_once_in_the_steps_it_announced(name):
    spec = build_model(name, NUM_ITEMS, {"max_len": MAX_LEN} if name == "sasrec" else {}).training_spec()
    whole, chunks = build_splits(*_day(), NUM_ITEMS, MAX_LEN), _chunks()
    batches = training_batches(chunks, spec, batch_size=16, seed=5)
    seen = list(batches)
    assert len(seen) == len(batches) and all(len(b["items"]) <= 16 for b in seen)

    def rows(arrays):
        table = np.concatenate([arrays["items"], arrays["positives"], arrays["user"][:, None]], axis=1)
        return table[np.lexsort(table.T[::-1])]

    got = {key: np.concatenate([b[key] for b in seen]) for key in ("items", "positives", "user")}
    np.testing.assert_array_equal(rows(got), rows(training_arrays(whole, spec)))
    assert all(b["negatives"].min() >= 1 and b["negatives"].max() <= NUM_ITEMS for b in seen)
    again = list(training_batches(chunks, spec, batch_size=16, seed=5))
    assert all(np.array_equal(a["items"], b["items"]) for a, b in zip(seen, again, strict=True))  # seeded


def test_a_model_learns_from_a_day_read_in_chunks():
    chunks = _chunks()
    params = {"embedding_dim": 16, "hidden_units": 32, "max_len": MAX_LEN, "num_negatives": 16}
    result = train_model("gru4rec", NUM_ITEMS, params,
                         TrainConfig(epochs=12, batch_size=32, learning_rate=5e-3, patience=3, seed=1), chunks)
    test = evaluate_split(lambda b: score_items(result.model, b, 128), chunks, "test")
    assert test["hr_at_10"] > 0.9 and test["mrr"] > 0.5, (test, result.history)
    valid = evaluate_split(lambda b: score_items(result.model, b, 128), chunks, "valid")
    assert valid["ndcg_at_10"] == pytest.approx(result.best_val_ndcg_at_10, abs=1e-6)  # the best epoch restored


def test_the_stages_train_and_gate_in_chunks_with_the_whole_days_evidence(tmp_path):
    from mlflow import MlflowClient

    from pipelines.training.candidates import train_candidate
    from pipelines.training.evaluation import evaluate_candidates

    streamed = gate_config(tmp_path, epochs=2, stream_above_users=0, stream_chunk_users=50)
    whole = gate_config(tmp_path, epochs=2, stream_above_users=None)
    write_features(streamed.layout.features, DS)
    for check in lake.DATA_CHECKS:
        (streamed.layout.check_record(DS, check)).parent.mkdir(parents=True, exist_ok=True)
        streamed.layout.check_record(DS, check).write_text(json.dumps({"success": True}))
    candidate = train_candidate(streamed, DS, "gru4rec")
    run = MlflowClient().get_run(candidate["run_id"])
    assert run.data.params["stream_chunk_users"] == "50" and run.data.params["num_users"] == "240"
    assert candidate["test"]["hr_at_10"] > 0  # tested in chunks
    gated = [evaluate_candidates(config, DS, [candidate]) for config in (streamed, whole)]
    for key in ("num_test_users", "popularity", "champion"):
        assert gated[0][key] == gated[1][key], key
    assert gated[0]["candidates"][0]["evidence"] == gated[1]["candidates"][0]["evidence"]
    assert gated[0]["candidates"][0]["evidence"]["popularity"]["users"] == 240
    again = train_candidate(whole, DS, "gru4rec")  # trained whole: another identity, not the streamed run reused
    assert again["run_id"] != candidate["run_id"]


def test_the_feature_digest_ignores_row_order_and_files_but_not_content(tmp_path):
    from pipelines.features.store import load_feature_partition

    root = tmp_path / "features"
    write_features(root, DS)
    folder = partition_path(root, DS) / lake.SEQUENCES
    first = load_feature_partition(root, DS)
    original = first.digest
    table = pq.read_table(folder)
    [file] = folder.glob("*.parquet")
    file.unlink()
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))
    for index, start in enumerate(range(0, table.num_rows, 100)):  # three files, rows in another order
        pq.write_table(shuffled.slice(start, 100), folder / f"part-{index}.parquet", row_group_size=7)
    rewritten = load_feature_partition(root, DS)
    assert rewritten.digest == original and rewritten.num_sequences == table.num_rows
    assert sum(b.num_rows for b in rewritten.sequence_batches([C.USER_KEY], batch_rows=16)) == table.num_rows
    items = table.column(C.ITEM_SEQ).to_pylist()
    items[17][2] += 1  # one item of one user
    for old in folder.glob("*.parquet"):
        old.unlink()
    pq.write_table(table.set_column(table.schema.get_field_index(C.ITEM_SEQ), C.ITEM_SEQ,
                                    pa.array(items, table.schema.field(C.ITEM_SEQ).type)), folder / "p.parquet")
    assert load_feature_partition(root, DS).digest != original


_rows = st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=6)), st.one_of(st.none(), st.integers(-5, 5)),
                           st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=4))), min_size=1, max_size=30,
                 unique_by=lambda row: row[0])


def _table(rows) -> pa.Table:
    keys, numbers, lists = zip(*rows, strict=True)
    return pa.table({"k": pa.array(keys, pa.string()), "n": pa.array(numbers, pa.int64()),
                     "s": pa.array(lists, pa.list_(pa.int32()))})


@settings(max_examples=60, deadline=None)
@given(rows=_rows, seed=st.integers(0, 2**16), batch=st.integers(1, 8))
def test_the_content_digest_is_the_same_for_any_row_order_and_batching(rows, seed, batch):
    table = _table(rows)
    digest = tables_digest([(table.schema, [table])])
    shuffled = table.take(np.random.default_rng(seed).permutation(table.num_rows))
    assert tables_digest([(table.schema, shuffled.to_batches(max_chunksize=batch))]) == digest
    key, number, items = rows[0]  # keys are unique, so changing this row's number changes the rows' multiset
    changed = [(key, 100 if number is None else number + 100, items), *rows[1:]]
    assert tables_digest([(table.schema, [_table(changed)])]) != digest
