"""The ``publish`` task: the day's recommendations and audiences, by customer id, where CRM tools read them.

1. Read the day's ``outputs/recommendations`` and ``outputs/audiences`` (by ``user_key``).
2. Map keys to customer ids (``customers``): anonymous visitors are left out, ids too long for the
   serving column go to ``quarantine/publishing/dt=D/`` with their reason; every row is counted.
3. Write the Personalize-style JSON Lines export (``publishing.export_jsonl``).
4. Publish to the serving database in one transaction (``store``), unless ``publishing.enabled`` is off.
5. Record the counts (no ids) in ``outputs/publications/dt=D/publication.json`` for the run report.

Counts reconcile: rows read = rows published + rows of anonymous visitors + rows quarantined +
rows of suppressed people (an erasure request not yet carried out) + rows of keys no validated raw day knows (``unmapped``; a key of the features outside the window's
raw days would be a lake inconsistency, and is logged as such).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines.config import PipelineConfig
from pipelines.io import atomic_partition, write_json_atomic
from pipelines.lake import PART_FILE, partition_path
from pipelines.publishing import exports, store
from pipelines.publishing.connection import ServingTarget, connect
from pipelines.publishing.customers import TOO_LONG, CustomerIndex, customer_index, hash_key

log = logging.getLogger(__name__)
CUSTOMER_ID = "customer_id"


class OutputsMissingError(FileNotFoundError):
    """The day has no recommendations to publish (score_users did not run for it)."""


def publish_outputs(config: PipelineConfig, ds: str, target: ServingTarget | None) -> dict[str, Any]:
    """Publish day ``ds`` (see the module docstring); ``target`` None only with ``publishing.enabled`` off."""
    started = time.perf_counter()
    layout = config.layout
    recommendations, audiences = _read_outputs(config, ds)
    index = customer_index(config, ds, hash_key(config))
    recs, rec_counts = _by_customer(recommendations, index)
    auds, aud_counts = _by_customer(audiences, index)
    quarantined = {**rec_counts.pop("quarantined_keys"), **aud_counts.pop("quarantined_keys")}
    if quarantined:
        _quarantine(config, ds, quarantined)
    model_version = recommendations.column(C.MODEL_VERSION)[0].as_py() if recommendations.num_rows else "none"
    summary: dict[str, Any] = {
        "ds": ds, "model_version": model_version,
        "recommendations": rec_counts, "audiences": aud_counts,
        "customers": len(set(recs.column(CUSTOMER_ID).to_pylist())),
        "customer_ids_quarantined": len(quarantined),
    }
    connection = None
    if config.publishing.enabled:  # connect first: an unreachable database fails before anything is written
        if target is None:
            raise ValueError("publish_outputs: publishing.enabled is on but no serving database was given")
        connection = connect(target)
    if config.publishing.export_jsonl:
        target_folder = partition_path(layout.activation_exports, ds)
        summary["exports"] = {"path": str(target_folder), "lines": exports.write_exports(target_folder, recs, auds)}
    if connection is not None:
        try:
            summary["database"] = {"target": target.describe(), "schema": config.publishing.schema_name,
                                   **store.publish_day(connection, config.publishing.schema_name,
                                                       config.publishing.max_customer_id_length, ds,
                                                       recs, auds, model_version)}
        finally:
            connection.close()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    write_json_atomic(layout.publication_record(ds), summary)
    log.info("published %s: %s recommendation rows for %s customers, %s audience rows (%s); left out %s",
             ds, rec_counts["published"], summary["customers"], aud_counts["published"],
             summary.get("database", {}).get("target", "no database"),
             {k: v for k, v in rec_counts.items() if k not in ("read", "published")})
    return summary


def _read_outputs(config: PipelineConfig, ds: str) -> tuple[pa.Table, pa.Table]:
    tables = []
    for root in (config.layout.recommendations, config.layout.audiences):
        folder = partition_path(root, ds)
        if not fs.exists(folder / PART_FILE):
            raise OutputsMissingError(f"{folder}: no {PART_FILE}, so there is nothing to publish for {ds}; run the "
                                      f"score_users task for {ds} first (clear it and its downstream in the UI)")
        tables.append(fs.read_parquet(folder / PART_FILE))
    return tables[0], tables[1]


def _by_customer(table: pa.Table, index: CustomerIndex) -> tuple[pa.Table, dict[str, Any]]:
    """The rows of known customers with their ids; counts of the rows left out, by why."""
    keys = table.column(C.USER_KEY).to_pylist()
    customer_ids = [index.by_key.get(key) for key in keys]
    anonymous = np.fromiter((key in index.anonymous for key in keys), bool, len(keys))
    too_long = np.fromiter((key in index.too_long for key in keys), bool, len(keys))
    suppressed = np.fromiter((key in index.suppressed for key in keys), bool, len(keys))
    mapped = np.fromiter((cid is not None for cid in customer_ids), bool, len(keys))
    unmapped = ~(mapped | anonymous | too_long | suppressed)
    if unmapped.any():
        log.error("%s rows belong to %s user keys that no validated raw day of the window holds; they are not "
                  "published. The features and the raw layer disagree: rebuild the features of the day",
                  int(unmapped.sum()), len({k for k, u in zip(keys, unmapped, strict=True) if u}))
    kept = table.filter(pa.array(mapped)).append_column(
        CUSTOMER_ID, pa.array([cid for cid in customer_ids if cid is not None], pa.string()))
    counts = {"read": len(keys), "published": int(mapped.sum()), "anonymous": int(anonymous.sum()),
              TOO_LONG: int(too_long.sum()), "suppressed": int(suppressed.sum()), "unmapped": int(unmapped.sum()),
              "quarantined_keys": {key: index.too_long[key] for key, bad in zip(keys, too_long, strict=True) if bad}}
    return kept, counts


def _quarantine(config: PipelineConfig, ds: str, too_long: dict[str, str]) -> None:
    """The ids the serving tables cannot take, with why (the quarantine is inside the raw zone's boundary)."""
    limit = config.publishing.max_customer_id_length
    table = pa.table({CUSTOMER_ID: pa.array(list(too_long.values()), pa.string()),
                      C.USER_KEY: pa.array(list(too_long), pa.string()),
                      C.QUARANTINE_REASON: pa.array([f"{TOO_LONG}: longer than {limit} characters "
                                                     "(publishing.max_customer_id_length)"] * len(too_long))})
    with atomic_partition(partition_path(config.layout.publishing_quarantine, ds)) as staging:
        fs.write_parquet(table, staging / PART_FILE)
    log.warning("publish %s: %s customer ids longer than %s characters quarantined to %s", ds, len(too_long),
                limit, partition_path(config.layout.publishing_quarantine, ds))
