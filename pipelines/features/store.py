"""Read one day's features, as the Spark job wrote them, into arrays for training and scoring."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines import lake
from pipelines.lake import partition_path


class FeaturesMissingError(FileNotFoundError):
    """The feature partition of a day is absent or incomplete."""


@dataclass(frozen=True)
class FeaturePartition:
    ds: str
    path: Path
    sequences: pa.Table  # USER_KEY, USER_BUCKET, ITEM_SEQ, PURCHASED_ITEMS; sorted by USER_KEY
    vocab: pa.Table  # ITEM_ID, ITEM_IDX, CATEGORY, FIRST_SEEN_DT; sorted by ITEM_IDX
    stats: dict[str, Any]

    @property
    def num_items(self) -> int:
        return int(self.vocab.num_rows)

    @property
    def digest(self) -> str:
        """A content digest of the training data (not of file names), stable across rewrites."""
        sha = hashlib.sha256()
        for table in (self.sequences, self.vocab):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            sha.update(sink.getvalue().to_pybytes())
        return sha.hexdigest()[:16]


def load_feature_partition(features_root: Path, ds: str) -> FeaturePartition:
    """Load ``features_root/dt=<ds>``; fail with what to run if it is not there."""
    path = partition_path(features_root, ds)
    stats_file = path / lake.FEATURE_STATS
    if not stats_file.exists():
        raise FeaturesMissingError(
            f"{path}: no features for {ds} (missing {lake.FEATURE_STATS}); run the build_features task "
            f"for this date first (or the whole DAG: make run DS={ds})")
    sequences = pq.read_table(path / lake.SEQUENCES).sort_by(C.USER_KEY)
    vocab = pq.read_table(path / lake.ITEM_VOCAB).sort_by(C.ITEM_IDX)
    return FeaturePartition(ds=ds, path=path, sequences=sequences, vocab=vocab,
                            stats=json.loads(stats_file.read_text()))
