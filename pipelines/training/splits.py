"""The day's features as the models see them: leave-one-out splits of each user's sequence."""

from __future__ import annotations

import numpy as np

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.features.store import FeaturePartition


def build_day_splits(config: PipelineConfig, features: FeaturePartition):
    """Leave-one-out splits of the day's sequences (last item test, the one before validation)."""
    from pipelines.models.data import build_splits

    sequences = features.sequences
    return build_splits(sequences.column(C.ITEM_SEQ).combine_chunks(),
                        sequences.column(C.USER_BUCKET).to_numpy().astype(np.int32),
                        features.num_items, config.features.max_seq_len)
