"""Read one day's features, as the Spark job wrote them, into arrays for training and scoring."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.features.content_digest import tables_digest
from pipelines.lake import partition_path


class FeaturesMissingError(FileNotFoundError):
    """The feature partition of a day is absent or incomplete."""


@dataclass(frozen=True)
class FeaturePartition:
    """One day's features. The sequences are read on first use (``sequences``), or streamed in batches
    (``sequence_batches``) by the stages that must not hold a large day whole."""

    ds: str
    path: Path
    vocab: pa.Table  # ITEM_ID, ITEM_IDX, CATEGORY, FIRST_SEEN_DT; sorted by ITEM_IDX
    stats: dict[str, Any]
    num_sequences: int  # rows of the sequences table, from the Parquet footers

    @property
    def num_items(self) -> int:
        return int(self.vocab.num_rows)

    @cached_property
    def sequences(self) -> pa.Table:
        """USER_KEY, USER_BUCKET, ITEM_SEQ, PURCHASED_ITEMS, ...: the whole table, sorted by USER_KEY."""
        return _read(fs.join(self.path, lake.SEQUENCES), self.ds).sort_by(C.USER_KEY)

    def sequence_batches(self, columns: list[str] | None = None, batch_rows: int = 65_536
                         ) -> Iterator[pa.RecordBatch]:
        """The sequences as record batches of at most ``batch_rows`` rows, in file order (not sorted),
        read as they are consumed: memory holds one batch, whatever the day's number of users."""
        folder = fs.join(self.path, lake.SEQUENCES)
        try:
            yield from fs.parquet_dataset(folder).to_batches(
                columns=columns, batch_size=batch_rows, batch_readahead=1, fragment_readahead=1)
        except (pa.ArrowInvalid, OSError) as err:
            raise _damaged(folder, self.ds, err) from None

    @cached_property
    def digest(self) -> str:
        """A content digest of the training data (not of file names or row order), stable across
        rewrites; computed batch by batch, so it never holds the sequences whole."""
        schema = fs.parquet_dataset(fs.join(self.path, lake.SEQUENCES)).schema
        return tables_digest([(schema, self.sequence_batches()), (self.vocab.schema, self.vocab.to_batches())])


def load_feature_partition(features_root: Path, ds: str) -> FeaturePartition:
    """Load ``features_root/dt=<ds>`` (vocabulary and stats; the sequences' footers); fail with what to
    run if it is not there or damaged."""
    path = partition_path(features_root, ds)
    stats_file = fs.join(path, lake.FEATURE_STATS)
    if not fs.exists(stats_file):
        raise FeaturesMissingError(
            f"{path}: no features for {ds} (missing {lake.FEATURE_STATS}); run the build_features task "
            f"for this date first (or the whole DAG: make run DS={ds})")
    num_sequences = count_rows(fs.join(path, lake.SEQUENCES), ds)
    vocab = _read(fs.join(path, lake.ITEM_VOCAB), ds).sort_by(C.ITEM_IDX)
    stats = fs.read_json(stats_file)
    for rows, name in ((num_sequences, lake.SEQUENCES), (vocab.num_rows, lake.ITEM_VOCAB)):
        expected = stats.get("users_with_sequences" if name == lake.SEQUENCES else "items")
        if expected is not None and rows != expected:
            raise FeaturesMissingError(
                f"{fs.join(path, name)}: {rows} rows but {lake.FEATURE_STATS} recorded {expected}; the partition is "
                f"damaged (never read short). Rerun the build_features task for {ds}")
    return FeaturePartition(ds=ds, path=path, vocab=vocab, stats=stats, num_sequences=num_sequences)


def count_rows(folder: Path, ds: str) -> int:
    """Rows of the Parquet files in ``folder``, from their footers (every footer is read: a damaged file fails)."""
    files = fs.list_dir(folder, suffix=".parquet")
    if not files:
        raise FeaturesMissingError(
            f"{folder}: no Parquet files; the feature partition of {ds} is incomplete. Rerun the "
            f"build_features task for {ds} (or the whole DAG: make run DS={ds})")
    try:
        return sum(fs.parquet_file(file).metadata.num_rows for file in files)
    except (pa.ArrowInvalid, OSError) as err:
        raise _damaged(folder, ds, err) from None


def _damaged(folder: Path, ds: str, err: Exception) -> FeaturesMissingError:
    broken = next((f for f in fs.list_dir(folder, suffix=".parquet") if not _readable(f)), folder)
    return FeaturesMissingError(
        f"{broken}: cannot be read ({str(err).splitlines()[0][:200]}); the feature partition of {ds} is "
        f"damaged. Rerun the build_features task for {ds} (or the whole DAG: make run DS={ds})")


def _read(folder: Path, ds: str) -> pa.Table:
    """A table of the partition, or an error that names the file that cannot be read."""
    try:
        return fs.read_parquet(folder)
    except (pa.ArrowInvalid, OSError) as err:
        raise _damaged(folder, ds, err) from None


def _readable(file: Path) -> bool:
    try:
        fs.parquet_file(file).metadata  # noqa: B018 - reading the footer is the check
    except (pa.ArrowInvalid, OSError):
        return False
    return True
