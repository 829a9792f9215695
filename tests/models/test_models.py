"""The three recommenders' shared contract, the split protocol, the input pipeline and the trainer.

The learning test uses a toy world where item i is always followed by item i % 30 + 1: a model that
learns anything ranks the next item near the top, a popularity baseline cannot (HR@10 ~ 1/3).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pyarrow as pa
import pytest

from pipelines.models import MODEL_NAMES, build_model, load_model
from pipelines.models import data as data_module
from pipelines.models.data import build_splits, training_arrays, training_batches
from pipelines.models.metrics import evaluate_full_ranking, popularity_scorer, popularity_scores
from pipelines.models.training import TrainConfig, score_items, top_k_items, train_model

NUM_ITEMS, NUM_USERS, BUCKETS, MAX_LEN = 30, 300, 16, 20
SMALL_PARAMS = {
    "caser": {"embedding_dim": 16, "num_horizontal": 8, "num_user_buckets": BUCKETS},
    "gru4rec": {"embedding_dim": 16, "hidden_units": 32, "max_len": MAX_LEN, "num_negatives": 16},
    "sasrec": {"hidden_units": 32, "num_blocks": 1, "max_len": MAX_LEN},
}
FAST = TrainConfig(epochs=1, batch_size=64, learning_rate=5e-3, seed=7, eval_batch_size=128)


@pytest.fixture(scope="module")
def chain_splits():
    rng = np.random.default_rng(0)
    starts, lengths = rng.integers(0, NUM_ITEMS, NUM_USERS), rng.integers(5, 15, NUM_USERS)
    seqs = [[(s + j) % NUM_ITEMS + 1 for j in range(n)] for s, n in zip(starts, lengths, strict=True)]
    return build_splits(seqs, np.arange(NUM_USERS) % BUCKETS, NUM_ITEMS, MAX_LEN)


def _inputs(rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.integers(1, NUM_ITEMS + 1, (rows, length)).astype(np.int32)
    items[:, : length // 3] = 0  # left padding
    return {"items": items, "user": rng.integers(0, BUCKETS, rows).astype(np.int32)}


# --- split protocol and input pipeline -------------------------------------------------------------


def test_build_splits_follows_leave_one_out_and_skips_short_users():
    seqs = pa.array([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]], type=pa.list_(pa.int32()))
    splits = build_splits(seqs, np.array([5, 6, 7]), num_items=10, max_len=3)
    assert splits.num_skipped_users == 1
    np.testing.assert_array_equal(splits.users, [5, 7])
    np.testing.assert_array_equal(splits.test_targets, [5, 10])
    np.testing.assert_array_equal(splits.valid_targets, [4, 9])
    np.testing.assert_array_equal(splits.valid_inputs, [[1, 2, 3], [0, 0, 8]])
    np.testing.assert_array_equal(splits.test_inputs, [[2, 3, 4], [0, 8, 9]])  # includes the valid item
    np.testing.assert_array_equal(splits.full_inputs, [[3, 4, 5], [8, 9, 10]])
    np.testing.assert_array_equal(splits.train_items, [[0, 1, 2, 3], [0, 0, 0, 8]])
    same = build_splits([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]], np.array([5, 6, 7]), 10, 3)
    np.testing.assert_array_equal(same.test_inputs, splits.test_inputs)


def test_build_splits_rejects_items_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside 1..3"):
        build_splits([[1, 2, 4]], np.array([0]), num_items=3, max_len=5)


def test_training_views_pair_each_input_with_its_next_items(chain_splits):
    model = build_model("caser", NUM_ITEMS, {**SMALL_PARAMS["caser"], "targets": 2})
    windows = training_arrays(chain_splits, model.training_spec())
    last = windows["items"][:, -1]
    np.testing.assert_array_equal(windows["positives"][:, 0], last % NUM_ITEMS + 1)
    np.testing.assert_array_equal(windows["positives"][:, 1], (last + 1) % NUM_ITEMS + 1)
    rows = training_arrays(
        chain_splits, build_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"]).training_spec()
    )
    real = rows["items"] != 0
    np.testing.assert_array_equal(rows["positives"][real], rows["items"][real] % NUM_ITEMS + 1)


@pytest.mark.parametrize("use_tf", [True, False])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_batches_have_negatives_of_the_declared_shape(chain_splits, name, use_tf):
    spec = build_model(name, NUM_ITEMS, SMALL_PARAMS[name]).training_spec()
    batches = training_batches(chain_splits, spec, batch_size=32, seed=1, use_tf=use_tf)
    batch = next(iter(batches.as_numpy_iterator() if use_tf else batches))
    expected = (
        (32, spec.length, spec.num_negatives)
        if spec.negatives_per == "position"
        else (32, spec.num_negatives)
    )
    assert batch["negatives"].shape == expected
    assert batch["negatives"].min() >= 1 and batch["negatives"].max() <= NUM_ITEMS
    assert batch["items"].shape == (32, spec.length)


# --- contract and registry -------------------------------------------------------------------------


def test_registry_names_and_unknown_model():
    assert set(MODEL_NAMES) == {"caser", "gru4rec", "sasrec"}
    with pytest.raises(ValueError, match="allowed models are.*sasrec"):
        build_model("bert4rec", NUM_ITEMS, {})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_param_key_names_the_key_and_the_allowed_keys(name):
    with pytest.raises(ValueError, match="'hiden_units'.*allowed keys"):
        build_model(name, NUM_ITEMS, {"hiden_units": 8})


def test_bad_loss_choice_is_refused():
    with pytest.raises(ValueError, match="loss='hinge'"):
        build_model("gru4rec", NUM_ITEMS, {"loss": "hinge"})


@pytest.mark.parametrize("length", [3, 7, 2 * MAX_LEN])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scores_have_the_contract_shape_for_any_input_length(name, length):
    model = build_model(name, NUM_ITEMS, SMALL_PARAMS[name])
    scores = model(_inputs(4, length), training=False)
    assert tuple(scores.shape) == (4, NUM_ITEMS + 1)
    assert keras.backend.standardize_dtype(scores.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(scores)).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_and_load_give_identical_scores(name, tmp_path):
    model = build_model(name, NUM_ITEMS, SMALL_PARAMS[name])
    inputs = _inputs(5, MAX_LEN)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    for loaded in (load_model(path), keras.models.load_model(path)):
        assert loaded.params == model.params and loaded.num_items == NUM_ITEMS
        np.testing.assert_array_equal(score_items(loaded, inputs), score_items(model, inputs))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_items_new_since_training_are_scored_as_unknown(name):
    model = build_model(name, NUM_ITEMS, SMALL_PARAMS[name])
    inputs = _inputs(3, MAX_LEN)
    with_new = {**inputs, "items": inputs["items"].copy()}
    with_new["items"][:, 10] = NUM_ITEMS + 7
    as_unknown = {**inputs, "items": inputs["items"].copy()}
    as_unknown["items"][:, 10] = 0
    np.testing.assert_array_equal(score_items(model, with_new), score_items(model, as_unknown))


def test_bare_item_arrays_are_accepted_only_by_models_that_ignore_the_user():
    inputs = _inputs(3, MAX_LEN)
    sasrec = build_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"])
    np.testing.assert_array_equal(score_items(sasrec, inputs["items"]), score_items(sasrec, inputs))
    with pytest.raises(ValueError, match="Caser embeds the user"):
        score_items(build_model("caser", NUM_ITEMS, SMALL_PARAMS["caser"]), inputs["items"])


def test_user_buckets_beyond_the_embedding_are_refused():
    caser = build_model("caser", NUM_ITEMS, SMALL_PARAMS["caser"])
    with pytest.raises(ValueError, match="num_user_buckets to at least 17"):
        score_items(caser, {"items": np.ones((1, 5), np.int32), "user": np.array([BUCKETS])})


def test_top_k_masks_padding_and_excluded_items():
    model = build_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"])
    inputs = _inputs(5, MAX_LEN)
    full_items, _ = top_k_items(model, inputs, k=NUM_ITEMS - 2, exclude=[[1, 2]] * 5, batch_size=2)
    assert full_items.shape == (5, NUM_ITEMS - 2)
    assert not np.isin(full_items, [0, 1, 2]).any()
    items, scores = top_k_items(model, inputs, k=5, batch_size=2)
    reference = score_items(model, inputs)[:, 1:]
    np.testing.assert_allclose(scores, -np.sort(-reference, axis=1)[:, :5], rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all() and items.min() >= 1


# --- training ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_epoch_reports_metrics_to_the_callback(name, chain_splits):
    seen = []
    result = train_model(
        name,
        NUM_ITEMS,
        SMALL_PARAMS[name],
        FAST,
        chain_splits,
        on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics)),
    )
    assert [epoch for epoch, _ in seen] == [1] and result.epochs_run == 1
    assert {"train_loss", "val_ndcg_at_10", "val_hr_at_10", "epoch_seconds"} <= set(seen[0][1])
    assert np.isfinite(seen[0][1]["train_loss"]) and result.stopped_reason == "max_epochs"


def test_a_non_finite_loss_stops_training_and_no_broken_epoch_is_restored(chain_splits):
    """An infinite learning rate turns the weights to inf/NaN within the first epoch."""
    seen = []
    config = dataclasses.replace(FAST, epochs=3, learning_rate=float("inf"))
    result = train_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"], config, chain_splits,
                         on_epoch_end=lambda epoch, metrics: seen.append(metrics))
    assert result.stopped_reason == "non_finite_loss" and result.epochs_run == 1 and result.best_epoch == 0
    assert not np.isfinite(seen[0]["train_loss"])
    assert all(np.isfinite(weights).all() for weights in result.model.get_weights())  # the initial ones
    assert np.isfinite(score_items(result.model, chain_splits.inputs("test"), 128)[:, 1:]).all()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sasrec", {"loss": "softmax"}),
        ("gru4rec", {"loss": "cross_entropy", "negative_sampling": "uniform"}),
        ("caser", {"targets": 3}),
    ],
)
def test_optional_losses_train(name, params, chain_splits):
    result = train_model(name, NUM_ITEMS, {**SMALL_PARAMS[name], **params}, FAST, chain_splits)
    assert np.isfinite(result.history[0]["train_loss"])


def test_numpy_pipeline_trains_without_tensorflow_data(chain_splits, monkeypatch):
    monkeypatch.setattr(data_module, "_tensorflow_available", lambda: False)
    result = train_model("gru4rec", NUM_ITEMS, SMALL_PARAMS["gru4rec"], FAST, chain_splits)
    assert np.isfinite(result.history[0]["train_loss"])


def test_time_budget_stops_after_the_first_epoch(chain_splits):
    config = TrainConfig(epochs=5, batch_size=64, time_budget_seconds=0.0)
    result = train_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"], config, chain_splits)
    assert result.stopped_reason == "time_budget" and result.epochs_run == 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_learns_deterministic_transitions(name, chain_splits):
    config = TrainConfig(
        epochs=12, batch_size=64, learning_rate=5e-3, patience=3, seed=1, eval_batch_size=128
    )
    result = train_model(name, NUM_ITEMS, SMALL_PARAMS[name], config, chain_splits)
    test = evaluate_full_ranking(
        lambda b: score_items(result.model, b, 128), chain_splits.inputs("test"), chain_splits.test_targets
    )
    assert test["hr_at_10"] > 0.9 and test["mrr"] > 0.5, (name, test, result.history)
    # The best epoch's weights are the ones returned.
    valid = evaluate_full_ranking(
        lambda b: score_items(result.model, b, 128), chain_splits.inputs("valid"), chain_splits.valid_targets
    )
    assert valid["ndcg_at_10"] == pytest.approx(result.best_val_ndcg_at_10, abs=1e-6)
    assert result.best_val_ndcg_at_10 == max(h["val_ndcg_at_10"] for h in result.history)


def test_popularity_cannot_solve_the_toy_world(chain_splits):
    popularity = popularity_scores(chain_splits.train_sequences, NUM_ITEMS)
    test = evaluate_full_ranking(
        popularity_scorer(popularity), chain_splits.inputs("test"), chain_splits.test_targets
    )
    assert test["hr_at_10"] < 0.6


# --- paper-protocol validation, fused attention, mixed precision ------------------------------------


def test_sampled_validation_every_other_epoch_selects_on_the_paper_protocol(chain_splits):
    config = TrainConfig(epochs=3, batch_size=64, learning_rate=5e-3, seed=3, eval_batch_size=128,
                         validation="sampled", eval_every=2, patience=10)
    result = train_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"], config, chain_splits)
    validated = [epoch for epoch in result.history if "val_ndcg_at_10" in epoch]
    assert [int(epoch["epoch"]) for epoch in validated] == [2, 3]  # every 2nd epoch, and the last
    assert result.best_epoch in (2, 3)
    assert result.best_val_ndcg_at_10 == max(epoch["val_ndcg_at_10"] for epoch in validated)


def test_train_config_refuses_an_unknown_validation_protocol():
    with pytest.raises(ValueError, match="validation='paper'.*'sampled'"):
        TrainConfig(validation="paper")


def test_fused_and_keras_attention_give_the_contract_and_old_saves_load(tmp_path):
    keras_attention = build_model("sasrec", NUM_ITEMS, {**SMALL_PARAMS["sasrec"], "attention": "keras"})
    config = keras_attention.get_config()
    del config["params"]["attention"]  # as saved before the option existed
    rebuilt = type(keras_attention).from_config(config)
    assert rebuilt.params["attention"] == "keras"
    fused = build_model("sasrec", NUM_ITEMS, SMALL_PARAMS["sasrec"])
    assert fused.params["attention"] == "fused"
    assert len(fused.trainable_weights) < len(keras_attention.trainable_weights)  # no output projection


def test_numpy_batches_are_used_under_a_backend_other_than_tensorflow(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert data_module._tensorflow_available() is False


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_epoch_under_mixed_bfloat16_keeps_float32_losses_and_scores(name, chain_splits):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        result = train_model(name, NUM_ITEMS, SMALL_PARAMS[name], FAST, chain_splits)
        scores = result.model(_inputs(4, MAX_LEN), training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(result.history[0]["train_loss"]) and result.history[0]["val_hr_at_10"] > 0
    assert keras.backend.standardize_dtype(scores.dtype) == "float32"


def _in_fresh_interpreter(code: str):
    """What ``code`` prints (JSON) when run by a new Python process in the repository."""
    import json
    import subprocess
    import sys

    from pipelines.config import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_tasks_that_need_no_model_start_without_keras():
    # TensorFlow takes seconds to import: each of these tasks runs in a process of its own on a worker.
    light = ["pipelines.reporting.report", "pipelines.registry.gate", "pipelines.validation.raw_day",
             "pipelines.validation.features", "pipelines.publishing.publish", "pipelines.models.metrics",
             "pipelines.models.data", "pipelines.tasks"]
    loaded = _in_fresh_interpreter(f"import json, sys\nfor name in {light!r}: __import__(name)\n"
                                   "print(json.dumps(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules)))")
    assert loaded == []


def test_registering_the_model_classes_lets_keras_rebuild_every_model():
    missing = _in_fresh_interpreter(
        "import json, keras\nfrom pipelines.models import register_keras_classes\nregister_keras_classes()\n"
        "print(json.dumps([n for n in ('Caser', 'GRU4Rec', 'SASRec')"
        " if keras.saving.get_registered_object(f'pipelines>{n}') is None]))")
    assert missing == []
