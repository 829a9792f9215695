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
    sequences = _read(path / lake.SEQUENCES, ds).sort_by(C.USER_KEY)
    vocab = _read(path / lake.ITEM_VOCAB, ds).sort_by(C.ITEM_IDX)
    stats = json.loads(stats_file.read_text())
    for table, name in ((sequences, lake.SEQUENCES), (vocab, lake.ITEM_VOCAB)):
        expected = stats.get("users_with_sequences" if name == lake.SEQUENCES else "items")
        if expected is not None and table.num_rows != expected:
            raise FeaturesMissingError(
                f"{path / name}: {table.num_rows} rows but {stats_file.name} recorded {expected}; the partition is "
                f"damaged (never read short). Rerun the build_features task for {ds}")
    return FeaturePartition(ds=ds, path=path, sequences=sequences, vocab=vocab, stats=stats)


def _read(folder: Path, ds: str) -> pa.Table:
    """A table of the partition, or an error that names the file that cannot be read."""
    try:
        return pq.read_table(folder)
    except (pa.ArrowInvalid, OSError) as err:
        broken = next((f for f in sorted(folder.glob("*.parquet")) if not _readable(f)), folder)
        raise FeaturesMissingError(
            f"{broken}: cannot be read ({str(err).splitlines()[0][:200]}); the feature partition of {ds} is "
            f"damaged. Rerun the build_features task for {ds} (or the whole DAG: make run DS={ds})") from None


def _readable(file: Path) -> bool:
    try:
        pq.ParquetFile(file).metadata  # noqa: B018 - reading the footer is the check
    except (pa.ArrowInvalid, OSError):
        return False
    return True
