"""A campaign's affinity: the softmax probability of its items, against a float64 reference."""

from __future__ import annotations

import numpy as np

from pipelines.scoring.audiences import campaign_affinity


def _reference(scores: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    logits = scores[:, 1:].astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probabilities / probabilities.sum(axis=1, keepdims=True) @ matrix[1:].astype(np.float64)


def test_affinity_is_the_softmax_share_of_the_campaign_items_and_leaves_the_scores_alone():
    rng = np.random.default_rng(3)
    scores = (rng.standard_normal((64, 5001)) * 4).astype(np.float32)
    scores[:, 4000:] = -np.inf  # items new since the champion's training: no share
    scores[:, 0] = 1e9  # the padding column never counts
    matrix = np.zeros((5001, 3), np.float32)
    matrix[1:50, 0] = 1
    matrix[4000:, 1] = 1  # a campaign of new items only
    matrix[1:, 2] = 1  # every item: the whole probability
    before = scores.copy()
    affinity = campaign_affinity(scores, matrix)
    assert affinity.dtype == np.float32 and affinity.shape == (64, 3)
    np.testing.assert_allclose(affinity, _reference(scores, matrix), rtol=1e-5, atol=1e-9)
    assert (affinity[:, 1] == 0).all()
    np.testing.assert_allclose(affinity[:, 2], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(scores, before)
