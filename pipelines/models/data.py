"""Arrays for training and evaluation, and the batched input pipeline with negative sampling.

Everything works on flat item values plus per-user offsets (the layout of a pyarrow ListArray), so
building the splits and the batches needs no Python loop per user. The protocol is the SASRec
paper's leave-one-out: per user with >= 3 items, the last item is the test target, the one before
it the validation target, and items[:-2] are for training. Inputs are left-padded with 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # only for annotations
    from pipelines.models.base import TrainingSpec

MIN_ITEMS_PER_USER = 3
Ragged = tuple[np.ndarray, np.ndarray]  # (flat values, offsets of length n + 1)


def flatten_sequences(item_seqs: pa.Array | pa.ChunkedArray | Sequence[Sequence[int]] | Ragged) -> Ragged:
    """(values int64[total], offsets int64[n + 1]) of a ListArray, a list of lists, or a Ragged pair."""
    if isinstance(item_seqs, tuple) and len(item_seqs) == 2 and isinstance(item_seqs[0], np.ndarray):
        return np.asarray(item_seqs[0], dtype=np.int64), np.asarray(item_seqs[1], dtype=np.int64)
    if isinstance(item_seqs, pa.ChunkedArray):
        item_seqs = item_seqs.combine_chunks()
    if not isinstance(item_seqs, pa.Array):
        item_seqs = pa.array(list(item_seqs), type=pa.list_(pa.int64()))
    # .values/.offsets index the whole child array (robust to slices and null lists); trim to ours.
    offsets = np.asarray(item_seqs.offsets, dtype=np.int64)
    values = item_seqs.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]].astype(np.int64)
    return values, offsets - offsets[0]


def tails(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """int32[n, width]: the last ``width`` items of values[starts[i]:ends[i]], left-padded with 0."""
    index = ends[:, None] - width + np.arange(width)[None, :]  # [n, width]
    inside = index >= starts[:, None]
    safe = np.clip(index, 0, max(len(values) - 1, 0))
    picked = values[safe] if len(values) else np.zeros_like(safe)
    return np.where(inside, picked, 0).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class SequenceSplits:
    """Leave-one-out arrays for n kept users (rows aligned across every array)."""

    train_items: np.ndarray  # int32[n, max_len + 1] last items of items[:-2], left-padded
    valid_inputs: np.ndarray  # int32[n, max_len] items[:-2]
    valid_targets: np.ndarray  # int32[n] items[-2]
    test_inputs: np.ndarray  # int32[n, max_len] items[:-1] (includes the validation item)
    test_targets: np.ndarray  # int32[n] items[-1]
    full_inputs: np.ndarray  # int32[n, max_len] all items, for producing recommendations
    users: np.ndarray  # int32[n] user bucket ids
    kept_rows: np.ndarray  # int64[n] row of each kept user in the input sequences
    history: Ragged  # every item of each kept user (for sampled evaluation)
    train_sequences: Ragged  # items[:-2] of each kept user, untruncated (for popularity)
    num_items: int
    max_len: int
    num_skipped_users: int  # users with fewer than 3 items

    def inputs(self, part: str) -> dict[str, np.ndarray]:
        """The model input dict of ``part`` in {"valid", "test", "full"}."""
        arrays = {"valid": self.valid_inputs, "test": self.test_inputs, "full": self.full_inputs}
        if part not in arrays:
            raise ValueError(f"unknown split part {part!r}; use one of {sorted(arrays)}.")
        return {"items": arrays[part], "user": self.users}

    def targets(self, part: str) -> np.ndarray:
        """The targets of ``part`` in {"valid", "test"}."""
        arrays = {"valid": self.valid_targets, "test": self.test_targets}
        if part not in arrays:
            raise ValueError(f"split part {part!r} has no targets; use one of {sorted(arrays)}.")
        return arrays[part]

    # The interface SplitChunks shares: a day held whole is one chunk.
    def chunks(self) -> Iterator[SequenceSplits]:
        yield self

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def user_range(self) -> tuple[int, int] | None:
        """(lowest, highest) user bucket, or None without users."""
        return (int(self.users.min()), int(self.users.max())) if len(self.users) else None

    @property
    def train_item_counts(self) -> np.ndarray:
        """int64[num_items + 1] occurrences of each item in the users' training parts (column 0 = 0)."""
        return item_counts(self.train_sequences[0], self.num_items)


def item_counts(values: np.ndarray, num_items: int) -> np.ndarray:
    """int64[num_items + 1] occurrences of each item id in ``values``; ids outside 1..num_items are ignored."""
    counts = np.bincount(values[(values >= 1) & (values <= num_items)], minlength=num_items + 1)
    counts[0] = 0
    return counts.astype(np.int64)


SequenceBatches = Callable[[], Iterable[tuple[pa.Array, np.ndarray]]]


@dataclasses.dataclass(frozen=True, eq=False)
class SplitChunks:
    """The leave-one-out splits of a day too large to hold whole, built chunk by chunk as they are read.

    ``read()`` yields (item sequences ListArray, user buckets) for successive chunks of users, e.g. record
    batches of the feature Parquet; every pass over the chunks reads them again, so memory holds one
    chunk's splits whatever the number of users. Splitting is per user, so the chunks' rows, in order,
    are exactly the rows ``build_splits`` gives for the whole day. One pass at construction counts
    users, item occurrences and user buckets (what sampling negatives and the checks need).
    """

    read: SequenceBatches
    num_items: int
    max_len: int
    num_users: int = 0
    num_skipped_users: int = 0
    num_chunks: int = 0
    train_item_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, np.int64))
    user_range: tuple[int, int] | None = None
    _rows_by_spec: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def scan(cls, read: SequenceBatches, num_items: int, max_len: int) -> SplitChunks:
        """Read every chunk once to count what the training loop needs before its first epoch."""
        counts, users, skipped, chunks, low, high = np.zeros(num_items + 1, np.int64), 0, 0, 0, None, None
        for chunk in cls(read, num_items, max_len).chunks():
            counts += chunk.train_item_counts
            users, skipped, chunks = users + chunk.num_users, skipped + chunk.num_skipped_users, chunks + 1
            if chunk.user_range is not None:
                low = chunk.user_range[0] if low is None else min(low, chunk.user_range[0])
                high = chunk.user_range[1] if high is None else max(high, chunk.user_range[1])
        return cls(read, num_items, max_len, users, skipped, chunks, counts,
                   None if low is None else (low, high))

    def chunks(self) -> Iterator[SequenceSplits]:
        for item_seqs, user_buckets in self.read():
            yield build_splits(item_seqs, user_buckets, self.num_items, self.max_len)

    def training_rows(self, spec: TrainingSpec) -> list[int]:
        """Training rows of each chunk under ``spec``: one pass, remembered (Keras needs the steps up front)."""
        key = (spec.view, spec.length, spec.targets)
        if key not in self._rows_by_spec:
            self._rows_by_spec[key] = [len(training_arrays(chunk, spec)["items"]) for chunk in self.chunks()]
        return self._rows_by_spec[key]


def build_splits(item_seqs, user_buckets: np.ndarray, num_items: int, max_len: int) -> SequenceSplits:
    """Leave-one-out splits of chronological item sequences; users with < 3 items are skipped."""
    values, offsets = flatten_sequences(item_seqs)
    user_buckets = np.asarray(user_buckets)
    if len(user_buckets) != len(offsets) - 1:
        raise ValueError(
            f"build_splits: {len(offsets) - 1} sequences but {len(user_buckets)} user buckets; "
            "pass one bucket per sequence."
        )
    _check_item_range(values, num_items)
    lengths = np.diff(offsets)
    kept = np.flatnonzero(lengths >= MIN_ITEMS_PER_USER)
    starts, ends = offsets[:-1][kept], offsets[1:][kept]
    return SequenceSplits(
        train_items=tails(values, starts, ends - 2, max_len + 1),
        valid_inputs=tails(values, starts, ends - 2, max_len),
        valid_targets=values[ends - 2].astype(np.int32),
        test_inputs=tails(values, starts, ends - 1, max_len),
        test_targets=values[ends - 1].astype(np.int32),
        full_inputs=tails(values, starts, ends, max_len),
        users=user_buckets[kept].astype(np.int32),
        kept_rows=kept,
        history=sub_ragged(values, starts, ends),
        train_sequences=sub_ragged(values, starts, ends - 2),
        num_items=int(num_items),
        max_len=int(max_len),
        num_skipped_users=int(len(lengths) - len(kept)),
    )


def _check_item_range(values: np.ndarray, num_items: int) -> None:
    bad = (values < 1) | (values > num_items)
    if bad.any():
        raise ValueError(
            f"build_splits: {int(bad.sum())} item ids are outside 1..{num_items} "
            f"(e.g. {int(values[bad][0])}); re-index items or raise num_items."
        )


def sub_ragged(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Ragged:
    """(values, offsets) of the rows values[starts[i]:ends[i]], compacted without a per-row loop."""
    lengths = ends - starts
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    row = np.repeat(np.arange(len(lengths)), lengths)
    index = starts[row] + np.arange(new_offsets[-1]) - new_offsets[:-1][row]
    return values[index], new_offsets


def sequence_training_arrays(splits: SequenceSplits, length: int) -> dict[str, np.ndarray]:
    """Rows of {"items": [m, length], "positives": [m, length], "user": [m]}; positives = next item."""
    rows = splits.train_items
    width = rows.shape[1]
    if width < length + 1:
        rows = np.pad(rows, ((0, 0), (length + 1 - width, 0)))
    rows = rows[:, -(length + 1) :]
    keep = (rows[:, 1:] != 0).any(axis=1) & (rows[:, :-1] != 0).any(axis=1)
    return {"items": rows[keep, :-1], "positives": rows[keep, 1:], "user": splits.users[keep]}


def window_training_arrays(splits: SequenceSplits, window: int, targets: int) -> dict[str, np.ndarray]:
    """Sliding windows {"items": [m, window], "positives": [m, targets], "user": [m]} (Caser)."""
    rows = np.pad(splits.train_items, ((0, 0), (window, 0)))  # [n, W + window]
    views = np.lib.stride_tricks.sliding_window_view(rows, window + targets, axis=1)  # [n, s, window+T]
    users = np.repeat(splits.users, views.shape[1])
    views = views.reshape(-1, window + targets)
    keep = (views[:, window:] != 0).all(axis=1) & (views[:, :window] != 0).any(axis=1)
    return {"items": views[keep, :window], "positives": views[keep, window:], "user": users[keep]}


def training_arrays(splits: SequenceSplits, spec: TrainingSpec) -> dict[str, np.ndarray]:
    if spec.view == "sequence":
        return sequence_training_arrays(splits, spec.length)
    if spec.view == "window":
        return window_training_arrays(splits, spec.length, spec.targets)
    raise ValueError(f"unknown training view {spec.view!r}; use 'sequence' or 'window'.")


def negative_probabilities(splits: SequenceSplits | SplitChunks, spec: TrainingSpec) -> np.ndarray | None:
    """float64[N+1] sampling probabilities (column 0 = 0), or None for uniform over 1..N."""
    if spec.negative_sampling == "uniform":
        return None
    if spec.negative_sampling != "popularity":
        raise ValueError(
            f"unknown negative_sampling {spec.negative_sampling!r}; use 'uniform' or 'popularity'."
        )
    counts = splits.train_item_counts.astype(np.float64)
    weights = counts**spec.popularity_alpha * (counts > 0)
    return weights / weights.sum() if weights.sum() > 0 else None


def negatives_shape(spec: TrainingSpec, rows: int) -> tuple[int, ...]:
    if spec.negatives_per == "position" and spec.view == "sequence":
        return (rows, spec.length, spec.num_negatives)
    return (rows, spec.num_negatives)


@dataclasses.dataclass(frozen=True)
class NumpyBatches:
    """One epoch of shuffled batches with negatives sampled per batch by numpy (no TensorFlow needed)."""

    arrays: dict[str, np.ndarray]
    spec: TrainingSpec
    num_items: int
    batch_size: int
    seed: int
    probabilities: np.ndarray | None = None  # None = uniform over 1..num_items

    def __len__(self) -> int:
        return -(-len(self.arrays["items"]) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(self.arrays["items"]))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch = {key: value[index].astype(np.int32) for key, value in self.arrays.items()}
            if self.spec.num_negatives > 0:
                batch["negatives"] = self._negatives(rng, negatives_shape(self.spec, len(index)))
            yield batch

    def _negatives(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        if self.probabilities is None:
            return rng.integers(1, self.num_items + 1, size=shape, dtype=np.int32)
        return rng.choice(self.num_items + 1, size=shape, p=self.probabilities).astype(np.int32)


def tf_dataset(
    arrays: dict[str, np.ndarray],
    spec: TrainingSpec,
    num_items: int,
    batch_size: int,
    seed: int,
    probabilities: np.ndarray | None = None,
):
    """tf.data pipeline: shuffle -> batch -> map(add stateless negatives per batch) -> prefetch."""
    import tensorflow as tf

    count = len(arrays["items"])
    dataset = tf.data.Dataset.from_tensor_slices({k: v.astype(np.int32) for k, v in arrays.items()})
    dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=False).batch(batch_size)
    log_probs = (
        None if probabilities is None else tf.constant(np.log(probabilities + 1e-30)[None], tf.float32)
    )

    def add_negatives(step, batch):
        rows = tf.shape(batch["items"])[0]
        shape = tf.stack([rows, *negatives_shape(spec, 1)[1:]])
        step_seed = tf.stack([tf.cast(seed, tf.int64), step])
        if log_probs is None:
            batch["negatives"] = tf.random.stateless_uniform(
                shape, step_seed, 1, num_items + 1, dtype=tf.int32
            )
        else:
            flat = tf.random.stateless_categorical(log_probs, tf.reduce_prod(shape), step_seed, tf.int32)
            batch["negatives"] = tf.reshape(flat, shape)
        return batch

    if spec.num_negatives > 0:
        dataset = dataset.enumerate().map(add_negatives, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def training_batches(
    splits: SequenceSplits | SplitChunks, spec: TrainingSpec, batch_size: int, seed: int,
    use_tf: bool | None = None,
):
    """One epoch of training batches: tf.data under the TensorFlow backend, else numpy batches; for a
    day in chunks, ``ChunkedBatches`` (numpy, one chunk in memory at a time).

    Under another backend (JAX, PyTorch) TensorFlow is never imported, even where it is installed.
    """
    probabilities = negative_probabilities(splits, spec)
    if isinstance(splits, SplitChunks):
        batches = ChunkedBatches(splits, spec, batch_size, seed, probabilities)
        if len(batches) == 0:
            raise ValueError(_NO_EXAMPLES)
        return batches
    arrays = training_arrays(splits, spec)
    if len(arrays["items"]) == 0:
        raise ValueError(_NO_EXAMPLES)
    if use_tf is None:
        use_tf = _tensorflow_available()
    make = tf_dataset if use_tf else NumpyBatches
    return make(arrays, spec, splits.num_items, batch_size, seed, probabilities)


_NO_EXAMPLES = ("no training examples: every user's training part is too short; "
                "check the feature window or lower the model's window/targets.")


@dataclasses.dataclass
class ChunkedBatches:
    """One epoch over a day in chunks: each chunk's training rows shuffled and batched in turn.

    The shuffle is within a chunk (a shuffle buffer of one chunk of users; the feature files hold users
    in hash-partition order, which carries nothing the model sees); negatives are drawn per batch as in
    ``NumpyBatches``. ``len`` is the number of steps, counted once per spec, as Keras needs it up front.
    """

    splits: SplitChunks
    spec: TrainingSpec
    batch_size: int
    seed: int
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return sum(-(-rows // self.batch_size) for rows in self.splits.training_rows(self.spec))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for index, chunk in enumerate(self.splits.chunks()):
            arrays = training_arrays(chunk, self.spec)
            if len(arrays["items"]):
                yield from NumpyBatches(arrays, self.spec, self.splits.num_items, self.batch_size,
                                        self.seed * 100_003 + index, self.probabilities)


def _tensorflow_available() -> bool:
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True
