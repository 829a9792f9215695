"""Great Expectations checks on a day's features before any model trains on them.

The sequences and the vocabulary are checked as two GX validations in one checkpoint, so the
results land in the same Data Docs site as the raw-event checks. A failure stops the DAG before
training, with the failed expectations and the Data Docs path in the message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import columns as C
from pipelines.config import PipelineConfig
from pipelines.feature_store import load_feature_partition
from pipelines.io import partition_path, write_json_atomic

log = logging.getLogger(__name__)
SEQ_LEN, SEQ_MIN_ITEM, SEQ_MAX_ITEM = "seq_len", "seq_min_item", "seq_max_item"


class FeatureCheckError(ValueError):
    """The day's features broke an expectation; training must not start on them."""


def sequence_frame(sequences) -> pd.DataFrame:
    """One row per user with the sequence's length and item range, for column expectations."""
    lists = sequences.column(C.ITEM_SEQ).combine_chunks()
    offsets = lists.offsets.to_numpy()
    values = lists.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(offsets)
    starts = np.minimum(offsets[:-1], max(len(values) - 1, 0))
    nonempty = lengths > 0
    return pd.DataFrame({
        C.USER_KEY: sequences.column(C.USER_KEY).to_numpy(zero_copy_only=False),
        C.USER_BUCKET: sequences.column(C.USER_BUCKET).to_numpy(),
        SEQ_LEN: lengths,
        SEQ_MIN_ITEM: np.where(nonempty, np.minimum.reduceat(values, starts) if len(values) else 0, 0),
        SEQ_MAX_ITEM: np.where(nonempty, np.maximum.reduceat(values, starts) if len(values) else 0, 0),
    })


def feature_expectations(config: PipelineConfig, num_items: int) -> dict[str, list]:
    import great_expectations.expectations as gxe

    features = config.features
    return {
        "sequences": [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column=C.USER_KEY),
            gxe.ExpectColumnValuesToBeUnique(column=C.USER_KEY),
            gxe.ExpectColumnValueLengthsToEqual(column=C.USER_KEY, value=64),
            gxe.ExpectColumnValuesToBeBetween(column=C.USER_BUCKET, min_value=0,
                                              max_value=features.user_buckets - 1),
            gxe.ExpectColumnValuesToBeBetween(column=SEQ_LEN, min_value=features.min_seq_len,
                                              max_value=features.max_seq_len + 2),
            gxe.ExpectColumnValuesToBeBetween(column=SEQ_MIN_ITEM, min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column=SEQ_MAX_ITEM, max_value=num_items),
        ],
        "item_vocab": [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column=C.ITEM_ID),
            gxe.ExpectColumnValuesToBeUnique(column=C.ITEM_ID),
            gxe.ExpectColumnValuesToBeUnique(column=C.ITEM_IDX),
            gxe.ExpectColumnValuesToBeBetween(column=C.ITEM_IDX, min_value=1, max_value=num_items),
        ],
    }


def validate_feature_partition(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Run the feature checkpoint for ``ds``; record the result; raise if any expectation failed."""
    features = load_feature_partition(config.layout.features, ds)
    frames = {"sequences": sequence_frame(features.sequences), "item_vocab": features.vocab.to_pandas()}
    outcomes = run_checkpoint(config.layout.gx_dir, "features", frames,
                              feature_expectations(config, features.num_items))
    failed = [f"{table}: {name}" for table, result in outcomes["results"].items() for name in result["failed"]]
    record = {"ds": ds, "success": not failed, "failed": failed, "data_docs_path": outcomes["data_docs_path"],
              "rows": {name: len(frame) for name, frame in frames.items()}}
    write_json_atomic(partition_path(config.layout.lake_dir / "checks", ds) / "features.json", record)
    if failed:
        raise FeatureCheckError(
            f"{features.path}: {len(failed)} feature expectation(s) failed: {'; '.join(failed)}. Training "
            f"is stopped. See the Data Docs at {outcomes['data_docs_path']}; fix the feature job or its input "
            f"and rerun build_features for {ds}.")
    log.info("features dt=%s passed %s checks; data docs: %s", ds,
             sum(len(v) for v in feature_expectations(config, features.num_items).values()),
             outcomes["data_docs_path"])
    return record


def run_checkpoint(gx_dir: Path, name: str, frames: dict[str, pd.DataFrame],
                   expectations: dict[str, list]) -> dict[str, Any]:
    """Validate each frame against its expectations in one GX checkpoint that updates the Data Docs."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    source = _pandas_source(context, f"{name}_source")
    definitions, batches = [], {}
    for table, frame in frames.items():
        asset = _dataframe_asset(source, table)
        batch = _whole_frame_batch(asset)
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=f"{name}.{table}", expectations=[e.copy() for e in expectations[table]]))
        definitions.append(context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}.{table}", data=batch, suite=suite)))
        batches[table] = frame
    results = {}
    for definition, (table, frame) in zip(definitions, batches.items(), strict=True):
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{name}.{table}", validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs")], result_format="SUMMARY"))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        validation = next(iter(outcome.run_results.values()))
        results[table] = {"success": bool(validation.success),
                          "failed": [r.expectation_config.type for r in validation.results if not r.success]}
    docs = context.get_docs_sites_urls()
    return {"results": results, "data_docs_path": docs[0]["site_url"] if docs else str(gx_dir)}


def _pandas_source(context, name: str):
    try:
        return context.data_sources.get(name)
    except (KeyError, ValueError, LookupError):
        return context.data_sources.add_pandas(name)


def _dataframe_asset(source, name: str):
    try:
        return source.get_asset(name)
    except LookupError:
        return source.add_dataframe_asset(name)


def _whole_frame_batch(asset):
    try:
        return asset.get_batch_definition("whole_frame")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole_frame")
