"""Ranking metrics, the full-ranking and sampled (SASRec paper) protocols, and a popularity baseline.

A scorer is any ``score_fn(inputs: dict) -> float[b, num_items + 1]`` over a batch of model inputs
(``{"items": int[b, L], "user": int[b]}``); column 0 is padding and never ranks. Ranks are 1-based
and ties are counted pessimistically: every other item scoring the same as the target ranks ahead of
it, so a constant scorer gets the worst rank rather than a lucky one. A non-finite score (NaN or
+inf; -inf is how callers mask items out) ranks last, and ``evaluate_*`` report how many rows of
scores had one (``non_finite_rows``), so a model that outputs NaN never looks perfect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from pipelines.models.data import SequenceSplits, SplitChunks, flatten_sequences, item_counts, sub_ragged

ScoreFn = Callable[[dict[str, np.ndarray]], np.ndarray]


def hr_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """Share of targets ranked in the top k."""
    return float(np.mean(_checked(ranks) <= k))


def ndcg_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """Mean 1 / log2(rank + 1) over targets in the top k (one relevant item per row)."""
    ranks = _checked(ranks).astype(np.float64)
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank."""
    return float(np.mean(1.0 / _checked(ranks).astype(np.float64)))


def metrics_from_ranks(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    return {f"hr_at_{k}": hr_at_k(ranks, k), f"ndcg_at_{k}": ndcg_at_k(ranks, k), "mrr": mrr(ranks)}


def _checked(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no ranks to average: the evaluation set is empty; check the split has users.")
    return ranks


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """``scores`` with NaN and +inf replaced by -inf: what cannot be compared ranks last."""
    scores = np.asarray(scores)
    broken = np.isnan(scores) | np.isposinf(scores)
    return np.where(broken, -np.inf, scores) if broken.any() else scores


def not_finite_rows(scores: np.ndarray) -> int:
    """Rows of ``scores`` with a NaN or +inf score (outside the padding column 0)."""
    items = np.asarray(scores)[:, 1:]
    return int((np.isnan(items) | np.isposinf(items)).any(axis=1).sum())


def rank_targets(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int64[n] 1-based rank of targets[i] among columns 1.. of scores[n, num_items + 1] (ties: pessimistic).

    Non-finite scores rank last (see ``finite_scores``): a NaN target gets rank num_items.
    """
    scores, targets = finite_scores(scores), np.asarray(targets)
    if np.any(targets < 1) or np.any(targets >= scores.shape[1]):
        raise ValueError(f"targets must be item ids in 1..{scores.shape[1] - 1}; 0 is padding.")
    target_scores = np.take_along_axis(scores, targets[:, None], axis=1)  # [n, 1]
    items = scores[:, 1:]  # [n, N]; the padding column never ranks
    ahead = (items > target_scores) | (items == target_scores)  # includes the target itself
    return ahead.sum(axis=1).astype(np.int64)


def as_input_dict(inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Model inputs as a dict; a bare int[n, L] array is taken as {"items": array} (no users)."""
    return dict(inputs) if isinstance(inputs, dict) else {"items": np.asarray(inputs)}


def _batches(inputs: dict[str, np.ndarray], batch_size: int) -> Iterator[tuple[slice, dict]]:
    count = len(inputs["items"])
    for start in range(0, count, batch_size):
        part = slice(start, start + batch_size)
        yield part, {key: value[part] for key, value in inputs.items()}


def evaluate_full_ranking(
    score_fn: ScoreFn,
    inputs: dict[str, np.ndarray] | np.ndarray,
    targets: np.ndarray,
    k: int = 10,
    batch_size: int = 1024,
) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of the targets ranked against every item, batch by batch (and non_finite_rows)."""
    ranks, non_finite = full_ranking_ranks(score_fn, inputs, targets, batch_size)
    return {**metrics_from_ranks(ranks, k), "non_finite_rows": non_finite}


def full_ranking_ranks(score_fn: ScoreFn, inputs, targets: np.ndarray, batch_size: int = 1024
                       ) -> tuple[np.ndarray, int]:
    """(int64[n] rank of each target against every item, rows of scores that were not finite)."""
    targets, inputs = np.asarray(targets), as_input_dict(inputs)
    ranks, non_finite = [], 0
    for part, batch in _batches(inputs, batch_size):
        scores = np.asarray(score_fn(batch))
        non_finite += not_finite_rows(scores)
        ranks.append(rank_targets(scores, targets[part]))
    return (np.concatenate(ranks) if ranks else np.array([], np.int64)), non_finite


def ndcg_gains(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """float64[n] each target's NDCG@k (1 / log2(rank + 1) inside the top k, else 0): ``ndcg_at_k`` is their mean."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


_BOOTSTRAP_CELLS = 4_000_000  # user draws held at once by bootstrap_lift (32 MB of indices)


def bootstrap_lift(candidate: np.ndarray, baseline: np.ndarray, resamples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over users of the candidate's lift over a baseline, per-user gains side by side.

    Returns the relative lift (mean ratio - 1) and the absolute difference of the means, each with the
    ``confidence`` percentile interval of ``resamples`` resamples of the users (with replacement),
    drawn a block at a time, so 1M users' 1,000 resamples never hold 1,000 x 1M indices.
    """
    candidate, baseline = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if candidate.shape != baseline.shape or candidate.size == 0:
        raise ValueError(f"bootstrap_lift: {candidate.shape} vs {baseline.shape}: the same users, at least one")
    rng = np.random.default_rng(seed)
    cand, base = np.empty(resamples), np.empty(resamples)
    block = max(1, _BOOTSTRAP_CELLS // candidate.size)  # resamples drawn at once: memory stays bounded
    for start in range(0, resamples, block):  # the same draws, in the same order, as one [resamples, users] draw
        picks = rng.integers(0, candidate.size, size=(min(block, resamples - start), candidate.size))
        cand[start : start + len(picks)] = candidate[picks].mean(axis=1)
        base[start : start + len(picks)] = baseline[picks].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(base > 0, cand / base - 1.0, np.where(cand > 0, np.inf, 0.0))
    tail = (1.0 - confidence) / 2 * 100
    point = candidate.mean() / baseline.mean() - 1.0 if baseline.mean() > 0 else (np.inf if candidate.mean() else 0.0)
    return {"relative": float(point), "relative_low": float(np.percentile(relative, tail)),
            "relative_high": float(np.percentile(relative, 100 - tail)),
            "difference": float(candidate.mean() - baseline.mean()),
            "difference_low": float(np.percentile(cand - base, tail)),
            "difference_high": float(np.percentile(cand - base, 100 - tail)),
            "users": int(candidate.size), "resamples": int(resamples), "confidence": float(confidence)}


def sample_negatives_excluding(
    histories, num_items: int, num_negatives: int, rng: np.random.Generator, max_rounds: int = 1000
) -> np.ndarray:
    """int64[n, num_negatives] items drawn uniformly (with replacement) from items each user never had."""
    values, offsets = flatten_sequences(histories)
    count = len(offsets) - 1
    rows = np.repeat(np.arange(count), np.diff(offsets))
    seen_keys = np.unique(rows * (num_items + 1) + values)  # one key per (user, item) interacted with
    negatives = rng.integers(1, num_items + 1, size=(count, num_negatives))
    for _ in range(max_rounds):
        keys = np.arange(count)[:, None] * (num_items + 1) + negatives
        clash = np.isin(keys, seen_keys)
        if not clash.any():
            return negatives
        negatives[clash] = rng.integers(1, num_items + 1, size=int(clash.sum()))
    raise ValueError(
        "could not draw negatives: some users interacted with (almost) every item; "
        "use evaluate_full_ranking for this data set."
    )


def evaluate_sampled(
    score_fn: ScoreFn,
    inputs: dict[str, np.ndarray] | np.ndarray,
    targets: np.ndarray,
    user_histories,
    num_negatives: int = 100,
    max_users: int = 10_000,
    seed: int = 0,
    k: int = 10,
    batch_size: int = 1024,
    num_items: int | None = None,
) -> dict[str, float]:
    """The SASRec paper protocol: each target ranked against ``num_negatives`` never-seen items.

    Negatives are drawn uniformly (with replacement, as in the paper's code) from the items a user
    never interacted with. At most ``max_users`` users, drawn at random with ``seed``, are evaluated.
    ``user_histories`` holds every item of each user (rows aligned with ``inputs``) as a ListArray,
    list of lists or (values, offsets). ``num_items`` defaults to the scores' width minus one.
    """
    targets, inputs = np.asarray(targets), as_input_dict(inputs)
    rng = np.random.default_rng(seed)
    chosen = sampled_rows(len(targets), max_users, rng)
    values, offsets = flatten_sequences(user_histories)
    history = sub_ragged(values, offsets[:-1][chosen], offsets[1:][chosen])
    return _evaluate_chosen(score_fn, {key: value[chosen] for key, value in inputs.items()}, targets[chosen],
                            history, rng, num_negatives, k, batch_size, num_items)


def sampled_rows(count: int, max_users: int, rng: np.random.Generator) -> np.ndarray:
    """The rows the sampled protocol evaluates: all ``count``, or ``max_users`` of them drawn with ``rng``, sorted."""
    if count > max_users:
        return np.sort(rng.choice(count, size=max_users, replace=False))
    return np.arange(count)


def _evaluate_chosen(score_fn: ScoreFn, subset: dict[str, np.ndarray], targets: np.ndarray, history,
                     rng: np.random.Generator, num_negatives: int, k: int, batch_size: int,
                     num_items: int | None) -> dict[str, float]:
    if num_items is None:
        num_items = np.asarray(score_fn({key: value[:1] for key, value in subset.items()})).shape[1] - 1
    negatives = sample_negatives_excluding(history, num_items, num_negatives, rng)  # [u, m]
    candidates = np.concatenate([targets[:, None], negatives], axis=1)  # [u, 1 + m]
    ranks, non_finite = [], 0
    for part, batch in _batches(subset, batch_size):
        scores = np.asarray(score_fn(batch))  # [b, N+1]
        non_finite += not_finite_rows(scores)
        ranks.append(_rank_first(np.take_along_axis(finite_scores(scores), candidates[part], axis=1)))
    metrics = metrics_from_ranks(np.concatenate(ranks) if ranks else np.array([]), k)
    return {**metrics, "non_finite_rows": non_finite}


def split_ranks(score_fn: ScoreFn, splits: SequenceSplits | SplitChunks, part: str = "test",
                batch_size: int = 1024) -> tuple[np.ndarray, int]:
    """``full_ranking_ranks`` of a split's ``part`` ("valid" or "test"), chunk by chunk for a day in chunks."""
    ranks, non_finite = [], 0
    for chunk in splits.chunks():
        chunk_ranks, chunk_non_finite = full_ranking_ranks(score_fn, chunk.inputs(part), chunk.targets(part),
                                                           batch_size)
        ranks.append(chunk_ranks)
        non_finite += chunk_non_finite
    return (np.concatenate(ranks) if ranks else np.array([], np.int64)), non_finite


def evaluate_split(score_fn: ScoreFn, splits: SequenceSplits | SplitChunks, part: str = "test", k: int = 10,
                   batch_size: int = 1024) -> dict[str, float]:
    """``evaluate_full_ranking`` of a split's ``part``, for a day held whole or in chunks (the same figures)."""
    ranks, non_finite = split_ranks(score_fn, splits, part, batch_size)
    return {**metrics_from_ranks(ranks, k), "non_finite_rows": non_finite}


def evaluate_split_sampled(score_fn: ScoreFn, splits: SequenceSplits | SplitChunks, part: str = "valid",
                           num_negatives: int = 100, max_users: int = 10_000, seed: int = 0, k: int = 10,
                           batch_size: int = 1024) -> dict[str, float]:
    """``evaluate_sampled`` of a split's ``part`` with its histories; for a day in chunks only the chosen
    users (at most ``max_users``) are gathered, and the figures equal the whole day's."""
    rng = np.random.default_rng(seed)
    chosen = sampled_rows(splits.num_users, max_users, rng)
    inputs, targets, values, lengths, start = [], [], [], [], 0
    for chunk in splits.chunks():
        rows = chosen[(chosen >= start) & (chosen < start + chunk.num_users)] - start
        start += chunk.num_users
        inputs.append({key: value[rows] for key, value in chunk.inputs(part).items()})
        targets.append(chunk.targets(part)[rows])
        history_values, history_offsets = chunk.history
        picked = sub_ragged(history_values, history_offsets[:-1][rows], history_offsets[1:][rows])
        values.append(picked[0])
        lengths.append(np.diff(picked[1]))
    if not inputs:
        raise ValueError("no ranks to average: the evaluation set is empty; check the split has users.")
    subset = {key: np.concatenate([part_inputs[key] for part_inputs in inputs]) for key in inputs[0]}
    history = (np.concatenate(values), np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64))
    return _evaluate_chosen(score_fn, subset, np.concatenate(targets), history, rng, num_negatives, k, batch_size,
                            splits.num_items)


def _rank_first(candidate_scores: np.ndarray) -> np.ndarray:
    """Rank of column 0 among the candidates of each row, ties pessimistic."""
    target = candidate_scores[:, :1]
    return 1 + (candidate_scores[:, 1:] >= target).sum(axis=1)


def popularity_scores(train_item_seqs, num_items: int) -> np.ndarray:
    """float32[num_items + 1] training interaction counts (column 0 = 0); ids outside 1..N are ignored.

    ``train_item_seqs``: a ListArray, list of lists, (values, offsets) or an int[n, L] padded matrix.
    """
    if isinstance(train_item_seqs, np.ndarray) and train_item_seqs.ndim == 2:
        values = train_item_seqs.ravel()
    else:
        values = flatten_sequences(train_item_seqs)[0]
    return item_counts(values, num_items).astype(np.float32)


def popularity_scorer(popularity: np.ndarray) -> ScoreFn:
    """A scorer that gives every user the same popularity scores."""
    popularity = np.asarray(popularity, dtype=np.float32)

    def score(batch: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(batch["items"])
        return np.broadcast_to(popularity, (rows, popularity.shape[0]))

    return score
