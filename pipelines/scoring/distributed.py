"""Scoring spread over Spark executors: the same lists, audiences and lift as one process, for many users.

Above ``scoring.spark_above_users`` scored users, ``write_recommendations`` runs its two passes of
the champion over the users (the lists with the day's affinities, then the held-out histories of the
lift) as Spark jobs instead of in the task's process. The users' model inputs (and what each bought)
go to the executors as a DataFrame; the champion goes once to each executor as a broadcast ``.keras``
file, loaded once per Python worker; each executor scores its users in ``scoring.batch_size`` rows with
the very functions of the one-process path (``rules.ranked_top_k``, ``audiences.campaign_affinity``)
through ``mapInArrow``, and the driver puts the rows back in the users' order. So the result does not
depend on the engine or the number of partitions: ``tests/scoring/test_distributed.py`` compares them.

The rule counters of each batch (``rules.RuleCounts``) travel on the batch's first output row and
are summed on the driver; Spark replaces a retried task's output whole, so nothing is counted twice.

On a cluster the executors need this package (the same virtualenv, or ``spark.submit.pyFiles``) and
Keras: the job ships the model, not the code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.scoring.audiences import campaign_affinity
from pipelines.scoring.rules import RuleCounts, RulePlan, ranked_top_k

log = logging.getLogger(__name__)

ROW, PURCHASED, TOP_ITEMS, TOP_SCORES, AFFINITIES, COUNTS = "row", "purchased", "top_items", "top_scores", "affinity", "counts"
_COUNT_FIELDS = [field.name for field in fields(RuleCounts)]
_MODELS: dict[str, Any] = {}  # the .keras file's SHA-256 -> the champion, loaded once per Python worker


@contextlib.contextmanager
def scoring_session(master: str, ds: str, driver_memory: str, jvm_conf: dict[str, str] | None = None) -> Iterator[Any]:
    """A Spark session on ``master`` for scoring ``ds``; a session already running (a test's) is used and left running."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors' Python: this virtualenv's
    session = (SparkSession.builder.master(master).appName(f"score_users ds={ds}")
               .config("spark.driver.memory", driver_memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.showConsoleProgress", "false")
               .config(map=jvm_conf or {})  # the config's spark.java_options, for driver and executors
               .getOrCreate())
    try:
        yield session
    finally:
        session.stop()


class SparkScorer:
    """The champion's two passes over the users (lists with affinities, and affinities alone) on Spark."""

    def __init__(self, spark, model, num_items: int, batch_size: int, rows_per_partition: int = 50_000) -> None:
        self.spark, self.num_items, self.batch_size = spark, num_items, batch_size
        self.rows_per_partition = rows_per_partition
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "champion.keras"
            model.save(path)
            blob = path.read_bytes()
        self.model = (hashlib.sha256(blob).hexdigest(), spark.sparkContext.broadcast(blob))  # (key, the .keras file)

    def ranked_top_k(self, inputs: dict[str, np.ndarray], k: int, plan: RulePlan, purchased: list[np.ndarray] | None,
                     counts: RuleCounts, campaign_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items int32 [n, k], scores float32 [n, k], affinity float32 [n, campaigns]), as the one-process pass."""
        n = _rows(inputs)
        table = _input_table(inputs, purchased)
        work = partial(_lists_of_partition, model=self.model, shapes=_shapes(inputs), num_items=self.num_items,
                       k=k, plan=plan, campaign_matrix=campaign_matrix, batch_size=self.batch_size)
        schema = (f"{ROW} long, {TOP_ITEMS} array<int>, {TOP_SCORES} array<float>, {AFFINITIES} array<float>, "
                  f"{COUNTS} array<long>")
        out = self._run(table, work, schema, "lists")
        order = _order(out, n)
        items = _fixed(out.column(TOP_ITEMS), k, np.int32)[order]
        scores = _fixed(out.column(TOP_SCORES), k, np.float32)[order]
        affinity = _fixed(out.column(AFFINITIES), campaign_matrix.shape[1], np.float32)[order]
        for batch_counts in out.column(COUNTS).drop_null().to_pylist():
            for name, value in zip(_COUNT_FIELDS, batch_counts, strict=True):
                setattr(counts, name, getattr(counts, name) + value)
        return items, scores, affinity

    def affinities(self, inputs: dict[str, np.ndarray], campaign_matrix: np.ndarray) -> np.ndarray:
        """float32 [n, campaigns]: each user's campaign affinity (``audiences.campaign_affinity``)."""
        n = _rows(inputs)
        work = partial(_affinities_of_partition, model=self.model, shapes=_shapes(inputs),
                       num_items=self.num_items, campaign_matrix=campaign_matrix, batch_size=self.batch_size)
        out = self._run(_input_table(inputs, None), work, f"{ROW} long, {AFFINITIES} array<float>", "affinities")
        return _fixed(out.column(AFFINITIES), campaign_matrix.shape[1], np.float32)[_order(out, n)]

    def _run(self, table: pa.Table, work: Callable, schema: str, what: str) -> pa.Table:
        started = time.perf_counter()
        partitions = max(2 * self.spark.sparkContext.defaultParallelism,
                         math.ceil(table.num_rows / self.rows_per_partition))
        frame = self.spark.createDataFrame(table).repartition(partitions)
        out = frame.mapInArrow(work, schema).toArrow()
        log.info("scored %s users on Spark (%s, %s partitions) in %.1f s", table.num_rows, what, partitions,
                 time.perf_counter() - started)
        return out


def _rows(inputs: dict[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))


def _shapes(inputs: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {key: np.asarray(value).shape[1:] for key, value in inputs.items()}


def _input_table(inputs: dict[str, np.ndarray], purchased: list[np.ndarray] | None) -> pa.Table:
    """One row per user: its index, each model input (a 2-D input as a list column) and what it bought."""
    columns: dict[str, pa.Array] = {ROW: pa.array(np.arange(_rows(inputs), dtype=np.int64))}
    for key, value in inputs.items():
        value = np.asarray(value)
        if value.ndim == 1:
            columns[key] = pa.array(value)
        else:
            width = int(np.prod(value.shape[1:]))
            offsets = np.arange(len(value) + 1, dtype=np.int32) * np.int32(width)
            columns[key] = pa.ListArray.from_arrays(offsets, pa.array(value.reshape(-1)))
    if purchased is not None:
        lengths = np.array([len(items) for items in purchased], np.int64)
        values = np.concatenate([np.zeros(0, np.int64), *[np.asarray(items, np.int64).reshape(-1) for items in purchased]])
        columns[PURCHASED] = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32()),
                                                      pa.array(values))
    return pa.table(columns)


def _order(out: pa.Table, n: int) -> np.ndarray:
    """Positions in ``out`` of rows 0..n-1; every user must have come back exactly once."""
    rows = out.column(ROW).to_numpy()
    order = np.argsort(rows, kind="stable")
    if len(rows) != n or not np.array_equal(rows[order], np.arange(n)):
        raise RuntimeError(f"the Spark scoring job returned {len(rows)} rows for {n} users (each exactly once "
                           "expected); see the executors' logs")
    return order


def _fixed(column: pa.ChunkedArray, width: int, dtype) -> np.ndarray:
    """A list column of equal-length lists as a [rows, width] array."""
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(dtype, copy=False).reshape(len(column), width)


# --- on the executors ---------------------------------------------------------------------------------------


def _champion(model):
    """The broadcast champion, loaded once per Python worker (a worker serves many tasks)."""
    key, blob = model
    loaded = _MODELS.get(key)
    if loaded is None:
        _threads_per_task()
        import keras

        from pipelines.models import register_keras_classes

        register_keras_classes()  # the custom Keras classes, for deserialisation
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "champion.keras"
            path.write_bytes(blob.value)
            loaded = _MODELS[key] = keras.saving.load_model(path)
    return loaded


def _threads_per_task() -> None:
    """TensorFlow's thread pools sized to the task's cores (``spark.task.cpus``), not to the machine's.

    An executor runs one task per core, each in its own Python worker: without this each worker's
    TensorFlow would start a pool as wide as the machine, and the workers would fight over the cores.
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # this worker's TensorFlow has started already: leave it
        tf.config.threading.set_intra_op_parallelism_threads(context.cpus())
        tf.config.threading.set_inter_op_parallelism_threads(context.cpus())


def _batch_inputs(batch: pa.RecordBatch, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    inputs = {}
    for key, shape in shapes.items():
        column = batch.column(key)
        values = column.flatten() if shape else column
        inputs[key] = values.to_numpy(zero_copy_only=False).reshape(len(batch), *shape)
    return inputs


def _purchased(batch: pa.RecordBatch) -> list[np.ndarray] | None:
    if PURCHASED not in batch.schema.names:  # the caller passed no purchases
        return None
    column = batch.column(PURCHASED)
    values = column.flatten().to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.cumsum(pc.list_value_length(column).fill_null(0).to_numpy())])
    return [values[bounds[i]:bounds[i + 1]] for i in range(len(batch))]


def _scorer(model, num_items: int, batch_size: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    from pipelines.models.training import score_over_vocab

    return partial(score_over_vocab, _champion(model), num_items=num_items, batch_size=batch_size)


def _lists_of_partition(batches: Iterator[pa.RecordBatch], *, model, shapes, num_items: int, k: int,
                        plan: RulePlan, campaign_matrix: np.ndarray, batch_size: int) -> Iterator[pa.RecordBatch]:
    score = _scorer(model, num_items, batch_size)

    def scored_and_tapped(part: dict[str, np.ndarray], affinity: list[np.ndarray]) -> np.ndarray:
        scores = score(part)
        affinity.append(campaign_affinity(scores, campaign_matrix) if campaign_matrix.shape[1]
                        else np.zeros((len(scores), 0), np.float32))
        return scores

    for batch in batches:
        if not len(batch):
            continue
        inputs, affinity = _batch_inputs(batch, shapes), []
        counts = RuleCounts()
        items, scores = ranked_top_k(partial(scored_and_tapped, affinity=affinity), inputs, num_items, k, plan,
                                     _purchased(batch), counts, batch_size=batch_size)
        n, width = len(batch), campaign_matrix.shape[1]
        totals = [[asdict(counts)[name] for name in _COUNT_FIELDS]] + [None] * (n - 1)
        yield pa.RecordBatch.from_pydict({
            ROW: batch.column(ROW),
            TOP_ITEMS: _lists(items.reshape(-1), n, k, pa.int32()),
            TOP_SCORES: _lists(scores.reshape(-1), n, k, pa.float32()),
            AFFINITIES: _lists(np.concatenate(affinity).reshape(-1), n, width, pa.float32()),
            COUNTS: pa.array(totals, pa.list_(pa.int64())),
        })


def _affinities_of_partition(batches: Iterator[pa.RecordBatch], *, model, shapes, num_items: int,
                             campaign_matrix: np.ndarray, batch_size: int) -> Iterator[pa.RecordBatch]:
    score = _scorer(model, num_items, batch_size)
    for batch in batches:
        if not len(batch):
            continue
        inputs = _batch_inputs(batch, shapes)
        affinity = np.concatenate([
            campaign_affinity(score({key: value[s:s + batch_size] for key, value in inputs.items()}), campaign_matrix)
            for s in range(0, len(batch), batch_size)])
        yield pa.RecordBatch.from_pydict({
            ROW: batch.column(ROW),
            AFFINITIES: _lists(affinity.reshape(-1), len(batch), campaign_matrix.shape[1], pa.float32())})


def _lists(flat: np.ndarray, n: int, width: int, kind: pa.DataType) -> pa.ListArray:
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(width))  # width 0: a day without campaigns
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(flat), kind))
