"""The day's features as the models see them: leave-one-out splits of each user's sequence.

A day with more than ``training.stream_above_users`` users is not held whole: ``day_splits`` gives
``SplitChunks`` that read ``training.stream_chunk_users`` sequences at a time from the feature
Parquet on every pass (training epochs, validation, the gate's re-scoring), so memory stays flat
as the number of users grows.
"""

from __future__ import annotations

import numpy as np

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.features.store import FeaturePartition


def build_day_splits(config: PipelineConfig, features: FeaturePartition):
    """Leave-one-out splits of the whole day's sequences (last item test, the one before validation)."""
    from pipelines.models.data import build_splits

    sequences = features.sequences
    return build_splits(sequences.column(C.ITEM_SEQ).combine_chunks(),
                        sequences.column(C.USER_BUCKET).to_numpy().astype(np.int32),
                        features.num_items, config.features.max_seq_len)


def day_splits(config: PipelineConfig, features: FeaturePartition):
    """The day's splits for training and the gate: held whole, or ``SplitChunks`` above the streaming size."""
    if not config.training.streams(features.num_sequences):
        return build_day_splits(config, features)
    from pipelines.models.data import SplitChunks

    def read():
        for batch in features.sequence_batches([C.ITEM_SEQ, C.USER_BUCKET], config.training.stream_chunk_users):
            yield (batch.column(C.ITEM_SEQ),
                   batch.column(C.USER_BUCKET).to_numpy(zero_copy_only=False).astype(np.int32))

    return SplitChunks.scan(read, features.num_items, config.features.max_seq_len)
