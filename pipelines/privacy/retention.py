"""Keep the raw zone no longer than needed: retention, and the sweep of suppressed people's new raw lines.

``apply_retention`` deletes the raw, validated and quarantined days (and the publishing quarantine and
activation exports, which hold customer ids) older than ``privacy.raw_retention_days`` before the
run's day; the config refuses a retention shorter than the feature window, which reads them. The
features keep only pseudonymous keys and stay.

``sweep_suppressed`` blanks, in raw event files, the lines of people on the suppression list: lines a
collector landed after their request (validation already refused them, counted as ``suppressed``).
The demo's collector calls it right after landing; the privacy DAG sweeps the days whose validation
counted suppressed rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.dates import shift
from pipelines.io import partition_lock
from pipelines.suppression import Suppressions, ids_in_line

log = logging.getLogger(__name__)


def apply_retention(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Delete the days older than ``privacy.raw_retention_days`` before ``ds``; the days deleted per zone."""
    layout = config.layout
    oldest_kept = shift(ds, -config.privacy.raw_retention_days)
    zones = {"raw_events": layout.raw_events, "validated": layout.validated_events, "quarantine": layout.quarantine,
             "publishing_quarantine": layout.publishing_quarantine, "activation_exports": layout.activation_exports}
    deleted: dict[str, list[str]] = {}
    for zone, root in zones.items():
        for day, folder in sorted(lake.day_folders(root).items()):
            if day < oldest_kept:
                with partition_lock(folder):
                    fs.remove(folder)
                deleted.setdefault(zone, []).append(day)
    if deleted:
        log.info("retention (%s days before %s): deleted %s", config.privacy.raw_retention_days, ds,
                 {zone: f"{len(days)} days, {days[0]}..{days[-1]}" for zone, days in deleted.items()})
    return {"oldest_kept": oldest_kept, "deleted_days": {zone: len(days) for zone, days in deleted.items()}}


def sweep_suppressed(config: PipelineConfig, days: list[str] | None = None) -> dict[str, int]:
    """Blank suppressed people's lines in the raw event files of ``days`` (default: the days validation
    counted them on); lines blanked per day."""
    layout = config.layout
    suppressions = Suppressions(layout.suppression_list, config.features.hash_key_env)
    if not suppressions:
        return {}
    if days is None:
        days = [day for day in lake.day_folders(layout.raw_events)
                if lake.read_record(layout.check_record(day, lake.RAW_EVENTS_CHECK)).get("rows_suppressed")]
    blanked = Counter()
    for day in sorted(days):
        folder = lake.partition_path(layout.raw_events, day)
        if not fs.is_dir(folder):
            continue
        with partition_lock(folder):
            for path in fs.list_dir(folder, suffix=".jsonl", hidden=True):
                blanked[day] += _blank_lines(path, suppressions)
    return {day: n for day, n in blanked.items() if n}


def _blank_lines(path: Path, suppressions: Suppressions) -> int:
    lines = fs.read_bytes(path).split(b"\n")
    blanked = 0
    for number, raw in enumerate(lines):
        if raw.strip() and any(value in suppressions for value in ids_in_line(raw.decode("utf-8", errors="replace"))):
            lines[number] = b""
            blanked += 1
    if blanked:
        tmp = fs.join(fs.parent(path), f".{fs.name_of(path)}.sweep.tmp")
        fs.write_bytes(tmp, b"\n".join(lines))
        fs.move(tmp, path)
    return blanked
