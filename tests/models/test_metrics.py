"""Ranking metrics, both evaluation protocols and the popularity baseline, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from pipelines.models.metrics import (
    evaluate_full_ranking,
    evaluate_sampled,
    hr_at_k,
    mrr,
    ndcg_at_k,
    popularity_scorer,
    popularity_scores,
    rank_targets,
    sample_negatives_excluding,
)


def test_metrics_on_hand_computed_ranks():
    assert ndcg_at_k(np.array([1])) == 1.0
    assert ndcg_at_k(np.array([3])) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(np.array([11]), k=10) == 0.0
    assert hr_at_k(np.array([1, 10, 11, 50]), k=10) == 0.5
    assert mrr(np.array([1, 2, 4])) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert ndcg_at_k(np.array([1, 3]), k=2) == 0.5


def test_metrics_refuse_empty_ranks():
    with pytest.raises(ValueError, match="empty"):
        hr_at_k(np.array([]))


def test_rank_targets_counts_ties_pessimistically_and_ignores_padding():
    scores = np.array(
        [
            [99.0, 0.1, 0.5, 0.3],  # column 0 is padding: its 99 never ranks
            [0.0, 0.2, 0.2, 0.2],  # three-way tie: the target gets the worst rank
            [0.0, 0.9, 0.2, 0.2],
        ]
    )
    ranks = rank_targets(scores, np.array([2, 1, 3]))
    np.testing.assert_array_equal(ranks, [1, 3, 3])


def test_rank_targets_rejects_padding_target():
    with pytest.raises(ValueError, match="0 is padding"):
        rank_targets(np.zeros((1, 4)), np.array([0]))


def _oracle(targets_by_first_item: dict[int, int], width: int):
    def score(batch):
        scores = np.zeros((len(batch["items"]), width), np.float32)
        for row, items in enumerate(batch["items"]):
            scores[row, targets_by_first_item[int(items[-1])]] = 1.0
        return scores

    return score


def test_full_ranking_is_one_for_an_oracle_and_independent_of_batch_size():
    inputs = {"items": np.array([[0, 1], [0, 2], [1, 3]]), "user": np.zeros(3, np.int32)}
    targets = np.array([2, 3, 4])
    oracle = _oracle({1: 2, 2: 3, 3: 4}, width=6)
    for batch_size in (1, 2, 10):
        metrics = evaluate_full_ranking(oracle, inputs, targets, k=10, batch_size=batch_size)
        assert metrics == {"hr_at_10": 1.0, "ndcg_at_10": 1.0, "mrr": 1.0, "non_finite_rows": 0}


def test_sampled_negatives_never_include_the_users_items():
    rng = np.random.default_rng(0)
    histories = [list(range(1, 19)), [1, 2], [20, 5, 7]]  # user 0 saw 18 of 20 items
    negatives = sample_negatives_excluding(histories, num_items=20, num_negatives=100, rng=rng)
    assert negatives.shape == (3, 100)
    for row, history in enumerate(histories):
        assert not set(negatives[row]) & set(history)
        assert negatives[row].min() >= 1 and negatives[row].max() <= 20
    assert set(negatives[0]) == {19, 20}


def test_sampled_negatives_fail_when_a_user_saw_every_item():
    with pytest.raises(ValueError, match="every item"):
        sample_negatives_excluding([[1, 2, 3]], 3, 5, np.random.default_rng(0), max_rounds=5)


def test_evaluate_sampled_caps_users_and_ranks_an_oracle_first():
    users, num_items = 50, 200
    inputs = {"items": np.arange(1, users + 1)[:, None].astype(np.int32), "user": np.zeros(users, np.int32)}
    targets = np.arange(1, users + 1) + 100
    histories = pa.array([[i, i + 100] for i in range(1, users + 1)], type=pa.list_(pa.int64()))
    seen_rows = []

    def oracle(batch):
        seen_rows.append(len(batch["items"]))
        return _oracle({i: i + 100 for i in range(1, users + 1)}, num_items + 1)(batch)

    metrics = evaluate_sampled(oracle, inputs, targets, histories, num_negatives=100, max_users=20, seed=3)
    assert metrics == {"hr_at_10": 1.0, "ndcg_at_10": 1.0, "mrr": 1.0, "non_finite_rows": 0}
    assert sum(seen_rows) <= 20 + 1  # 20 users, plus one row to read the score width


def test_evaluate_sampled_a_constant_scorer_ranks_last():
    inputs = {"items": np.ones((4, 1), np.int32), "user": np.zeros(4, np.int32)}
    metrics = evaluate_sampled(
        lambda b: np.zeros((len(b["items"]), 31)),
        inputs,
        np.full(4, 2),
        [[1, 2]] * 4,
        num_negatives=10,
        seed=0,
    )
    assert metrics["mrr"] == pytest.approx(1 / 11)


def test_popularity_counts_training_items_only_and_scores_everyone_alike():
    popularity = popularity_scores([[1, 2, 2], [2, 3]], num_items=4)
    np.testing.assert_array_equal(popularity, [0, 1, 3, 1, 0])
    padded = popularity_scores(np.array([[0, 1, 2, 2], [0, 0, 2, 3]]), num_items=4)
    np.testing.assert_array_equal(padded, popularity)
    scorer = popularity_scorer(popularity)
    batch = {"items": np.zeros((3, 2), np.int32), "user": np.zeros(3, np.int32)}
    assert scorer(batch).shape == (3, 5)
    metrics = evaluate_full_ranking(scorer, batch, np.array([2, 1, 4]), k=1)
    # ranks: item 2 -> 1; item 1 ties with item 3 -> 3 (pessimistic); item 4 ties with nothing at 0 -> 4
    assert metrics["hr_at_1"] == pytest.approx(1 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)


def test_evaluate_sampled_scores_at_most_10000_users_by_default():
    users, num_items = 10_050, 300
    inputs = {"items": np.ones((users, 1), np.int32), "user": np.zeros(users, np.int32)}
    seen_rows = []

    def scorer(batch):
        seen_rows.append(len(batch["items"]))
        return np.zeros((len(batch["items"]), num_items + 1), np.float32)

    evaluate_sampled(scorer, inputs, np.full(users, 2), (np.ones(users, np.int64), np.arange(users + 1)),
                     num_items=num_items)
    assert sum(seen_rows) == 10_000


def test_sampled_protocol_ranks_the_test_target_given_the_validation_item():
    from pipelines.models.data import build_splits

    splits = build_splits([[1, 2, 3, 4], [5, 6, 7]], np.array([0, 1]), num_items=50, max_len=4)
    seen = []

    def scorer(batch):
        seen.append(batch["items"].copy())
        scores = np.zeros((len(batch["items"]), 51), np.float32)
        scores[np.arange(len(scores)), batch["items"][:, -1] + 1] = 1.0  # "next item" oracle
        return scores

    metrics = evaluate_sampled(scorer, splits.inputs("test"), splits.test_targets, splits.history, seed=1)
    assert metrics["hr_at_10"] == 1.0  # possible only because the input ends with the validation item
    np.testing.assert_array_equal(seen[-1][:, -1], splits.valid_targets)


def test_a_model_that_outputs_nan_ranks_last_and_is_counted():
    """A NaN score once ranked 0 (NDCG inf); now it ranks last and the rows are reported."""
    targets = np.array([1, 2, 3])
    broken = lambda batch: np.full((len(batch["items"]), 5), np.nan, dtype=np.float32)  # noqa: E731
    metrics = evaluate_full_ranking(broken, np.zeros((3, 2), np.int32), targets, k=2)
    assert metrics == {"hr_at_2": 0.0, "ndcg_at_2": 0.0, "mrr": 0.25, "non_finite_rows": 3}
    scores = np.array([[0.0, np.nan, 0.5, np.inf, -np.inf]])  # -inf: an item masked out on purpose
    assert rank_targets(scores, np.array([2])).tolist() == [1]  # NaN and +inf behind, -inf behind
    assert rank_targets(scores, np.array([1])).tolist() == [4]
    histories = [[1], [2], [3]]
    sampled = evaluate_sampled(broken, np.zeros((3, 2), np.int32), targets, histories, num_negatives=2, k=2)
    assert sampled["non_finite_rows"] == 3 and sampled["ndcg_at_2"] == 0.0


def test_bootstrap_lift_intervals_are_paired_and_repeatable():
    from pipelines.models.metrics import bootstrap_lift, ndcg_gains

    rng = np.random.default_rng(1)
    baseline = ndcg_gains(rng.integers(1, 40, 400), k=10)
    same = bootstrap_lift(baseline, baseline, resamples=300)
    assert same["relative"] == 0.0 and same["relative_low"] == same["relative_high"] == 0.0  # paired: no noise
    better = bootstrap_lift(ndcg_gains(np.ones(400, np.int64), k=10), baseline, resamples=300)
    assert better["relative_low"] > 0.5 and better["difference_low"] > 0 and better["users"] == 400
    noisy = bootstrap_lift(np.roll(baseline, 1), baseline, resamples=300)
    assert noisy["relative_low"] < 0 < noisy["relative_high"]  # a reshuffle is no lift
    assert bootstrap_lift(np.roll(baseline, 1), baseline, resamples=300) == noisy  # same seed, same interval


def test_bootstrap_lift_drawn_in_blocks_equals_one_draw_of_every_resample(monkeypatch):
    from pipelines.models import metrics

    rng = np.random.default_rng(5)
    candidate, baseline = rng.random(1_001), rng.random(1_001)
    monkeypatch.setattr(metrics, "_BOOTSTRAP_CELLS", 3_000)  # blocks of 2 resamples
    blocked = metrics.bootstrap_lift(candidate, baseline, resamples=250, seed=4)
    monkeypatch.setattr(metrics, "_BOOTSTRAP_CELLS", 10**9)
    assert metrics.bootstrap_lift(candidate, baseline, resamples=250, seed=4) == blocked
    monkeypatch.setattr(metrics, "_BOOTSTRAP_CELLS", 1)  # one resample at a time
    assert metrics.bootstrap_lift(candidate, baseline, resamples=250, seed=4) == blocked
