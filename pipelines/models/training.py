"""Train a registered recommender with per-epoch validation, early stopping and a time budget; score.

Each epoch is one pass of ``fit`` over freshly shuffled batches with fresh negatives. Every
``eval_every`` epochs (and after the last one) the model is validated, by full ranking (NDCG@k / HR@k
against every item) or by the SASRec paper's sampled protocol (target against 100 never-seen items,
at most 10,000 users, the same negatives every time). The best validated epoch's weights are
restored. The loss is computed inside a thin wrapper model, so ``fit`` runs unchanged on any backend.
A non-finite training loss stops training at once (``stopped_reason`` ``non_finite_loss``), and an
epoch whose loss or validation scores were not finite is never the one restored.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import keras
import numpy as np

from pipelines.models.base import SequenceRecommender, build_model
from pipelines.models.data import (
    ChunkedBatches,
    NumpyBatches,
    SequenceSplits,
    SplitChunks,
    flatten_sequences,
    training_batches,
)
from pipelines.models.metrics import as_input_dict, evaluate_split, evaluate_split_sampled

EpochCallback = Callable[[int, dict[str, float]], None]
VALIDATIONS = ("full", "sampled")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # most passes over the training data
    batch_size: int = 128  # training rows per step
    learning_rate: float = 1e-3  # Adam step size
    patience: int = 3  # epochs without a better validation NDCG@k before stopping
    time_budget_seconds: float | None = 3600.0  # stop after the epoch that exceeds it; None = no limit
    seed: int = 42  # seeds weights, shuffling, dropout and negatives
    eval_batch_size: int = 512  # users scored at once during validation
    k: int = 10  # cut-off of the validation metrics
    validation: str = "full"  # "full": rank against every item | "sampled": the SASRec paper's protocol
    eval_every: int = 1  # validate every this many epochs (and after the last); patience counts epochs
    steps_per_execution: int = 8  # training steps per compiled call (fewer Python round trips)
    jit_compile: bool | str = "auto"  # XLA for the train step; "auto" = Keras' choice (off on CPU)
    validation_seed: int = 0  # seeds the sampled protocol's users and negatives (fixed across epochs)

    def __post_init__(self):
        if self.validation not in VALIDATIONS:
            raise ValueError(f"TrainConfig: validation={self.validation!r} is not one of {list(VALIDATIONS)}.")
        if self.eval_every < 1 or self.steps_per_execution < 1:
            raise ValueError("TrainConfig: eval_every and steps_per_execution must be >= 1.")


@dataclasses.dataclass
class TrainResult:
    model: SequenceRecommender  # with the best epoch's weights
    history: list[dict[str, float]]  # one dict per epoch, as passed to on_epoch_end
    best_epoch: int  # 1-based
    best_val_ndcg_at_10: float  # validation NDCG at config.k (10 by default) of the best epoch
    epochs_run: int
    train_seconds: float
    stopped_reason: str  # "patience" | "time_budget" | "max_epochs" | "non_finite_loss"


class _LossModel(keras.Model):
    """Wraps a recommender so that ``fit`` minimises its ``training_loss`` on any backend."""

    def __init__(self, recommender: SequenceRecommender):
        super().__init__(name=f"{recommender.name}_trainer")
        self.recommender = recommender

    def call(self, batch, training=False):
        return self.recommender.training_loss(batch, training=training)  # scalar

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return y_pred


def train_model(
    name: str,
    num_items: int,
    params: dict | None,
    config: TrainConfig,
    splits: SequenceSplits | SplitChunks,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train model ``name`` on ``splits`` (a day held whole, or in chunks read from the feature files
    each epoch); see the module docstring for the loop."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(name, num_items, params)
    _check_user_range(model, splits.user_range)
    trainer = _LossModel(model)
    trainer.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        steps_per_execution=config.steps_per_execution,
        jit_compile=config.jit_compile,
    )
    spec, key = model.training_spec(), f"val_ndcg_at_{config.k}"
    history, best_weights, best_epoch, best_ndcg = [], model.get_weights(), 0, -1.0
    started, stopped_reason = time.monotonic(), "max_epochs"
    for epoch in range(1, config.epochs + 1):
        metrics = _train_epoch(trainer, splits, spec, config, epoch)
        if not math.isfinite(metrics["train_loss"]):  # the weights are garbage now: keep the best so far
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
            stopped_reason = "non_finite_loss"
            break
        over_budget = (
            config.time_budget_seconds is not None
            and time.monotonic() - started >= config.time_budget_seconds
        )
        if epoch % config.eval_every == 0 or epoch == config.epochs or over_budget:
            metrics.update(_validate(model, splits, config))
            metrics["epoch_seconds"] += metrics["eval_seconds"]
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if _usable(metrics, key) and metrics[key] > best_ndcg:
            best_weights, best_epoch, best_ndcg = model.get_weights(), epoch, metrics[key]
        if key in metrics and epoch - best_epoch >= config.patience:
            stopped_reason = "patience"
            break
        if over_budget:
            stopped_reason = "time_budget"
            break
    model.set_weights(best_weights)
    return TrainResult(
        model, history, best_epoch, best_ndcg, len(history), time.monotonic() - started, stopped_reason
    )


def _usable(metrics: dict[str, float], key: str) -> bool:
    """A validated epoch whose scores were all finite (a NaN score ranks last, but such weights are unsound)."""
    return key in metrics and math.isfinite(metrics[key]) and not metrics.get("val_non_finite_rows", 0)


def _train_epoch(trainer, splits, spec, config: TrainConfig, epoch: int) -> dict[str, float]:
    began = time.monotonic()
    batches = training_batches(splits, spec, config.batch_size, seed=config.seed * 1000 + epoch)
    steps = None
    if isinstance(batches, NumpyBatches | ChunkedBatches):  # Keras wants generators to yield (x,) tuples
        batches, steps = ((batch,) for batch in batches), len(batches)
    fit = trainer.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)  # already shuffled
    seconds = time.monotonic() - began
    return {"epoch": float(epoch), "train_loss": float(fit.history["loss"][-1]),
            "fit_seconds": seconds, "epoch_seconds": seconds}


def _validate(model, splits, config: TrainConfig) -> dict[str, float]:
    """Validation metrics (prefixed ``val_``) under ``config.validation``, and the time they took."""
    began = time.monotonic()
    score_fn = lambda inputs: score_items(model, inputs, config.eval_batch_size)  # noqa: E731
    if config.validation == "sampled":
        validation = evaluate_split_sampled(score_fn, splits, "valid", seed=config.validation_seed, k=config.k,
                                            batch_size=config.eval_batch_size)
    else:
        validation = evaluate_split(score_fn, splits, "valid", config.k, config.eval_batch_size)
    metrics = {f"val_{name}": value for name, value in validation.items()}
    metrics["eval_seconds"] = time.monotonic() - began
    return metrics


def _check_users(model: SequenceRecommender, users: np.ndarray) -> None:
    _check_user_range(model, (int(users.min()), int(users.max())) if len(users) else None)


def _check_user_range(model: SequenceRecommender, user_range: tuple[int, int] | None) -> None:
    buckets = model.num_user_buckets
    if buckets is not None and user_range is not None and (user_range[0] < 0 or user_range[1] >= buckets):
        raise ValueError(
            f"user buckets span {user_range[0]}..{user_range[1]} but the model embeds "
            f"{buckets}; set the model's num_user_buckets to at least {user_range[1] + 1}."
        )


def prepare_inputs(
    model: SequenceRecommender, inputs: dict[str, np.ndarray] | np.ndarray
) -> dict[str, np.ndarray]:
    """int32 inputs with item ids unknown to the model (new since training, or < 0) set to 0.

    A bare int[n, L] items array is accepted for models that ignore the user.
    """
    inputs = as_input_dict(inputs)
    items = np.asarray(inputs["items"], dtype=np.int64)
    items = np.where((items < 0) | (items > model.num_items), 0, items).astype(np.int32)
    if "user" not in inputs and model.num_user_buckets is not None:
        raise ValueError(
            f"{type(model).__name__} embeds the user: pass {{'items': ..., 'user': ...}} "
            "(e.g. splits.inputs('test')), not the items array alone."
        )
    users = np.asarray(inputs.get("user", np.zeros(len(items))), dtype=np.int32)
    _check_users(model, users)
    return {"items": items, "user": users}


def score_items(
    model: SequenceRecommender, inputs: dict[str, np.ndarray] | np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """float32[n, num_items + 1] scores, computed batch_size rows at a time (column 0 = padding)."""
    inputs = prepare_inputs(model, inputs)
    parts = [
        np.asarray(model.predict_on_batch({k: v[i : i + batch_size] for k, v in inputs.items()}))
        for i in range(0, len(inputs["items"]), batch_size)
    ]
    return (
        np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, model.num_items + 1), np.float32)
    )


def score_over_vocab(
    model: SequenceRecommender, inputs: dict[str, np.ndarray] | np.ndarray, num_items: int, batch_size: int = 512
) -> np.ndarray:
    """``score_items`` as float32[n, num_items + 1] for a vocabulary of ``num_items`` (column 0 = padding).

    Item ids are append-only, so a model trained on an earlier night knows a prefix of today's items:
    the items new since then score -inf (never ranked, no probability). Columns past ``num_items``
    (a model of a later vocabulary) are dropped.
    """
    scores = score_items(model, inputs, batch_size)
    if scores.shape[1] == num_items + 1:
        return scores
    padded = np.full((scores.shape[0], num_items + 1), -np.inf, dtype=np.float32)
    padded[:, : min(scores.shape[1], num_items + 1)] = scores[:, : num_items + 1]
    return padded


def top_k_items(
    model: SequenceRecommender,
    inputs: dict[str, np.ndarray] | np.ndarray,
    k: int,
    exclude=None,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """(item_idx int32[n, k], scores float32[n, k]), best first; padding and ``exclude`` never appear.

    ``exclude``: per-row item ids to leave out (list of arrays, list of lists, ListArray or
    (values, offsets)). Only ``batch_size`` x (num_items + 1) scores exist at any time.
    """
    inputs = as_input_dict(inputs)
    return top_k_scored(lambda batch: score_items(model, batch, batch_size), inputs, model.num_items, k,
                        exclude=exclude, batch_size=batch_size)


def top_k_scored(
    score_batch,
    inputs: dict[str, np.ndarray],
    num_items: int,
    k: int,
    exclude=None,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_items`` for any scorer: ``score_batch(inputs of up to batch_size rows) -> [b, num_items + 1]``."""
    if not 1 <= k <= num_items:
        raise ValueError(f"k={k} must be in 1..num_items={num_items}.")
    count = len(inputs["items"])
    excluded = flatten_sequences(exclude) if exclude is not None else None
    top_items, top_scores = np.zeros((count, k), np.int32), np.zeros((count, k), np.float32)
    for start in range(0, count, batch_size):
        part = slice(start, min(start + batch_size, count))
        scores = np.asarray(score_batch({key: v[part] for key, v in inputs.items()}))  # [b, N+1]
        if scores.dtype != np.float32 or not scores.flags.writeable:  # e.g. a broadcast popularity row
            scores = np.array(scores, np.float32)
        _mask_excluded(scores, excluded, part)
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [b, k] unordered
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        top_items[part] = np.take_along_axis(best, order, axis=1)
        top_scores[part] = np.take_along_axis(best_scores, order, axis=1)
    return top_items, top_scores


def _mask_excluded(scores: np.ndarray, excluded, part: slice) -> None:
    """Set the padding column and each row's excluded items to -inf, in place."""
    scores[:, 0] = -np.inf
    if excluded is None:
        return
    values, offsets = excluded
    lo, hi = offsets[part.start], offsets[part.stop]
    rows = np.repeat(np.arange(part.stop - part.start), np.diff(offsets[part.start : part.stop + 1]))
    items = values[lo:hi]
    inside = (items >= 1) & (items < scores.shape[1])
    scores[rows[inside], items[inside]] = -np.inf
