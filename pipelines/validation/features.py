"""Great Expectations checks on a day's clean events and features before any model trains on them.

The sequences, the vocabulary and the day's clean events are checked as GX validations (see
``pipelines.validation.checks``), so the results land in the same Data Docs site as the raw-event
checks. Schema and identity checks are ``fail``: they stop the DAG before training, with the failed
expectations and the Data Docs pages in the message. Retention through cleaning and the bot share
have the severity the config gives them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.features.store import load_feature_partition
from pipelines.io import write_json_atomic
from pipelines.validation.checks import FAIL, DataCheckError, run_checks, with_severity

log = logging.getLogger(__name__)
SEQ_LEN, SEQ_MIN_ITEM, SEQ_MAX_ITEM = "seq_len", "seq_min_item", "seq_max_item"
IS_BOT, BOT = "is_bot", "bot"  # is_bot: as the feature job writes it (pipelines.features.cleaning)


class FeatureCheckError(DataCheckError):
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
        lake.SEQUENCES: [
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
        lake.ITEM_VOCAB: [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column=C.ITEM_ID),
            gxe.ExpectColumnValuesToBeUnique(column=C.ITEM_ID),
            gxe.ExpectColumnValuesToBeUnique(column=C.ITEM_IDX),
            gxe.ExpectColumnValuesToBeBetween(column=C.ITEM_IDX, min_value=1, max_value=num_items),
        ],
    }


def clean_event_expectations(config: PipelineConfig, rows_accepted: int | None) -> list:
    """Checks of the day's clean events (``features/dt=<ds>/events``): identity, types, retention, bots."""
    import great_expectations.expectations as gxe

    checks, severity = config.checks, config.checks.severity
    found = [
        with_severity(gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=rows_accepted), "clean_events", FAIL,
                      "at least one event, and no more than validation accepted"),
        with_severity(gxe.ExpectColumnValuesToNotBeNull(column=C.USER_KEY), "clean_events", FAIL),
        with_severity(gxe.ExpectColumnValueLengthsToEqual(column=C.USER_KEY, value=64), "clean_events", FAIL,
                      "HMAC-SHA256 hex: the raw user id never gets here"),
        with_severity(gxe.ExpectColumnValuesToBeInSet(column=C.EVENT_TYPE, value_set=list(C.EVENT_TYPES)),
                      "clean_events", FAIL),
        with_severity(gxe.ExpectColumnMeanToBeBetween(column=BOT, max_value=checks.max_bot_share), "bot_share",
                      severity.bot_share, "share of the day's clean events flagged as bots"),
    ]
    if rows_accepted:
        found.append(with_severity(gxe.ExpectTableRowCountToBeBetween(
            min_value=int(checks.min_clean_retention * rows_accepted)), "clean_events_retention",
            severity.clean_events_retention,
            f"at least {checks.min_clean_retention:.0%} of the {rows_accepted} events validation accepted"))
    return found


def validate_feature_partition(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Run the feature and clean-event checks for ``ds``; record the result; raise if a fail check failed."""
    features = load_feature_partition(config.layout.features, ds)
    frames = {lake.SEQUENCES: sequence_frame(features.sequences), lake.ITEM_VOCAB: features.vocab.to_pandas()}
    expectations = {table: [with_severity(e, f"features.{table}", FAIL) for e in found]
                    for table, found in feature_expectations(config, features.num_items).items()}
    clean = fs.join(features.path, lake.CLEAN_EVENTS)
    if fs.is_dir(clean):
        frames["clean_events"] = clean_event_frame(clean)
        expectations["clean_events"] = clean_event_expectations(config, _rows_accepted(config, ds))
    outcome = run_checks(config.layout.gx_dir, "features", ds, frames, expectations)
    if not fs.is_dir(clean):
        outcome["warnings"].append(f"clean_events [warn]: {clean} not found; the feature job wrote no clean events")
    record = {"ds": ds, **outcome, "data_docs_path": outcome["data_docs"].get(lake.SEQUENCES, str(config.layout.gx_dir)),
              "rows": {name: len(frame) for name, frame in frames.items()}}
    write_json_atomic(config.layout.check_record(ds, lake.FEATURES_CHECK), record)
    for warning in outcome["warnings"]:
        log.warning("features dt=%s: %s", ds, warning)
    if not outcome["success"]:
        raise FeatureCheckError(
            f"{features.path}: {len(outcome['failures'])} feature check(s) failed: {'; '.join(outcome['failures'])}. "
            f"Training is stopped. See the Data Docs at {', '.join(outcome['data_docs'].values())}; fix the feature "
            f"job or its input and rerun build_features for {ds}.")
    log.info("features dt=%s passed %s checks (%s warnings); data docs: %s", ds, len(outcome["checks"]),
             len(outcome["warnings"]), outcome["data_docs"])
    return record


def clean_event_frame(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder, columns=[C.USER_KEY, C.EVENT_TYPE, IS_BOT])
    return frame.assign(**{BOT: frame.pop(IS_BOT).astype("float64")})


def _rows_accepted(config: PipelineConfig, ds: str) -> int | None:
    return lake.read_record(config.layout.check_record(ds, lake.RAW_EVENTS_CHECK)).get("rows_accepted")
