"""Carry out the pending requests: every store the pipeline keeps a person in, each step idempotent and counted.

One batch for all pending requests (the cost grows with the partitions that hold them, not with the
number of requests):

=================  ======================================================  ==========  ===========
store              what                                                    ``erase``   ``suppress``
=================  ======================================================  ==========  ===========
raw_events         ``raw/events/dt=D`` of the days that hold them (index)  yes         no (hold)
quarantine         ``quarantine/events/dt=D`` of those days                yes         no (hold)
imports            ``imports/<source>/<file>/quarantine.jsonl``            yes         no (hold)
validated          ``raw/validated/dt=D`` of those days (counts adjusted)  yes         yes
features           every ``features/dt=D`` (their ``user_key`` rows)       yes         yes
outputs            recommendations, audiences, exports, publishing quar.   yes         yes
serving            the serving tables, every day, then ``VACUUM FULL``     yes         yes
models             registered versions trained on them: tagged             yes         yes
text               Data Docs, task logs, reports, records, MLflow files    yes         yes
=================  ======================================================  ==========  ===========

A request whose person is found nowhere is ``not_found`` (with the time checked); any other ends
``done`` with its counts. A crash part-way leaves the requests pending: the next run does the steps
again, and a step already done finds nothing more to remove. The validation of later nights keeps
them out (``pipelines.suppression``), and the next night's model is trained without them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from typing import Any

from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.privacy.requests import DONE, ERASE, FAILED, NOT_FOUND, finish_request, pending_requests
from pipelines.privacy.rewrite import Matcher, rewrite_partition, rewrite_single_file, scrub_tree
from pipelines.privacy.subjects import Subject, resolve_subjects
from pipelines.publishing.connection import ServingTarget, connect
from pipelines.publishing.customers import hash_key
from pipelines.publishing.store import erase_customers
from pipelines.registry.erased import mark_erased_training_data
from pipelines.suppression import append_suppressed, suppression_digest

log = logging.getLogger(__name__)
STORES = ("raw_events", "quarantine", "imports", "validated", "features", "outputs", "serving", "models", "text")


def erase_pending(config: PipelineConfig, target: ServingTarget | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every pending request carried out (see the module doc); a summary with counts per request, no ids."""
    layout = config.layout
    requests = pending_requests(layout)
    if not requests:
        return {"requests": 0, "done": 0, "not_found": 0}
    key = hash_key(config)
    subjects = resolve_subjects(config, requests, key)
    _suppress_everything_found(config, subjects, key, now)
    counts: dict[str, Counter] = defaultdict(Counter)
    try:
        _erase_lake(config, subjects, counts)
        _erase_serving(config, subjects, target, counts)
        _mark_models(config, subjects, counts)
        _scrub_text(config, subjects, counts)
    except Exception:
        log.exception("erasure of %s requests failed part-way; they stay pending and the next run finishes them",
                      len(requests))
        raise
    now = now or dt.datetime.now(dt.UTC)
    outcomes = []
    for subject in subjects:
        found = {store: counts[subject.request_id][store] for store in STORES if counts[subject.request_id][store]}
        status = DONE if any(n for store, n in found.items() if store != "models") or subject.days else NOT_FOUND
        outcomes.append(finish_request(layout, subject.request, status, {"identifiers": _sizes(subject), **found},
                                       now))
    summary = {"requests": len(subjects), "done": sum(o["status"] == DONE for o in outcomes),
               "not_found": sum(o["status"] == NOT_FOUND for o in outcomes),
               "outcomes": {o["request_id"]: {"status": o["status"], **o["counts"]} for o in outcomes}}
    log.info("erasure: %s requests, %s done, %s not found; counts per request: %s", summary["requests"],
             summary["done"], summary["not_found"], summary["outcomes"])
    return summary


def record_failure(config: PipelineConfig, error: str) -> None:
    """Mark nothing done: the requests stay pending (the audit says why the run failed, without ids)."""
    from pipelines.privacy.requests import append_audit

    for request in pending_requests(config.layout):
        append_audit(config.layout, {**request.audit_fields(), "status": FAILED, "error": error[:300],
                                     "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "pending": True})


def _sizes(subject: Subject) -> dict[str, int]:
    return {kind: len(values) for kind, values in subject.identifiers().items()}


def _suppress_everything_found(config: PipelineConfig, subjects: list[Subject], key: bytes,
                               now: dt.datetime | None) -> None:
    """The linked ids and the emails go on the suppression list too (the customer id went at intake)."""
    since = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    append_suppressed(config.layout.suppression_list, [
        {"digest": suppression_digest(value, key), "request_id": subject.request_id, "since": since}
        for subject in subjects for value in sorted(subject.user_ids | subject.emails)])


def _erase_lake(config: PipelineConfig, subjects: list[Subject], counts: dict[str, Counter]) -> None:
    layout = config.layout
    erased = [subject for subject in subjects if subject.request.kind == ERASE]
    everyone, raw_zone = Matcher(subjects), Matcher(erased)
    for day in sorted(set().union(*(subject.days for subject in erased))):
        _add(counts, "raw_events", rewrite_partition(lake.partition_path(layout.raw_events, day), raw_zone,
                                                     blank_lines=True))
        _add(counts, "quarantine", rewrite_partition(lake.partition_path(layout.quarantine, day), raw_zone))
    if raw_zone:
        for path in [path for source in fs.list_dir(layout.imports, kind="dir", hidden=True)
                     for upload in fs.list_dir(source, kind="dir", hidden=True)
                     for path in [fs.join(upload, "quarantine.jsonl")] if fs.is_file(path)]:
            _add(counts, "imports", rewrite_single_file(path, raw_zone))
    for day in sorted(set().union(*(subject.days for subject in subjects))):
        _add(counts, "validated", rewrite_partition(lake.partition_path(layout.validated_events, day), everyone))
    for store, roots in (("features", [layout.features]),
                         ("outputs", [layout.recommendations, layout.audiences, layout.activation_exports,
                                      layout.publishing_quarantine])):
        for root in roots:  # every day: a person stays in the window's features long after their last event
            for folder in lake.day_folders(root).values():
                _add(counts, store, rewrite_partition(folder, everyone))


def _erase_serving(config: PipelineConfig, subjects: list[Subject], target: ServingTarget | None,
                   counts: dict[str, Counter]) -> None:
    if target is None:
        return
    connection = connect(target)
    try:
        for subject in subjects:
            deleted = erase_customers(connection, config.publishing.schema_name, sorted(subject.user_ids),
                                      vacuum_full=False)
            counts[subject.request_id]["serving"] += sum(deleted.values())
        if config.privacy.vacuum_full and any(counts[s.request_id]["serving"] for s in subjects):
            erase_customers(connection, config.publishing.schema_name, [], vacuum_full=True)
    finally:
        connection.close()


def _mark_models(config: PipelineConfig, subjects: list[Subject], counts: dict[str, Counter]) -> None:
    days = {subject.request_id: subject.days for subject in subjects if subject.days}
    if not days:
        return
    for request_id, versions in mark_erased_training_data(config, days).items():
        counts[request_id]["models"] += len(versions)


def _scrub_text(config: PipelineConfig, subjects: list[Subject], counts: dict[str, Counter]) -> None:
    """Data Docs, task logs, reports, MLflow's files and the lake's JSON records; never the rows (done above)."""
    layout = config.layout
    everyone = Matcher(subjects)
    data_zones = [layout.raw_events, layout.validated_events, layout.quarantine, layout.imports, layout.features,
                  layout.recommendations, layout.audiences, layout.activation_exports, layout.publishing_quarantine,
                  config.layout.lake_dir / "privacy"]
    for root in {layout.gx_dir, layout.logs_dir, layout.airflow_home / "logs", layout.reports_dir,
                 layout.mlflow_dir, layout.lake_dir}:
        _add(counts, "text", scrub_tree(root, everyone, skip=data_zones))


def _add(counts: dict[str, Counter], store: str, removed: Counter) -> None:
    for request_id, n in removed.items():
        counts[request_id][store] += n
