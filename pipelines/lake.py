"""The lake's layout: every folder and file name the pipeline reads or writes, spelled once.

    <lake>/raw/events/dt=D/*.jsonl              what the collector (or an import) lands
    <lake>/raw/validated/dt=D/part-00000.parquet  accepted rows, typed, and _counts.json
    <lake>/quarantine/events/dt=D/...           refused rows with their reasons
    <lake>/imports/<source>/<file>/             an import's quarantine and reconciliation
    <lake>/features/dt=D/<table>/, _stats.json  what the feature job writes (FEATURE_TABLES)
    <lake>/checks/dt=D/<check>.json             each data check's record (raw_events, features)
    <lake>/evaluations/dt=D/                    candidates/<model>.json, evaluation.json, decision.json
    <lake>/raw/catalog/dt=D/                    optional: the shop's catalog (availability, stock, price)
    <lake>/outputs/recommendations/dt=D/, outputs/audiences/dt=D/  (by user_key; _rules.json, _lift.json)
    <lake>/outputs/publications/dt=D/publication.json  what the publish task wrote (counts only)
    <lake>/activation/exports/dt=D/             JSON Lines by customer id (the raw zone's trust boundary)
    <lake>/quarantine/publishing/dt=D/          customer ids the serving tables cannot take
    <lake>/registry/champion_history.jsonl      every move of the champion alias
    <lake>/privacy/requests/*.jsonl             erasure requests dropped in (make erase), read and removed by intake
    <lake>/privacy/pending/<request_id>.json    an accepted request until it is done (the only place its id is kept)
    <lake>/privacy/audit.jsonl                  every request's status and counts, by request id (no customer id)
    <lake>/privacy/suppressed.jsonl             keyed digests of suppressed user ids (``pipelines.suppression``)
    <reports>/run-D.{html,md,json}              the run report and summary

Only ``dt=YYYY-MM-DD`` folders are days: hidden staging folders of writers in flight
(``.staging-...``, see ``pipelines.io``) and anything else are never read as a partition.
Nothing here imports from the stages; every stage, the Spark job and the tests import this.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Protocol

from pipelines import filesystem as fs
from pipelines.dates import window_bounds

DAY_PREFIX = "dt="
PART_FILE = "part-00000.parquet"  # the one Parquet file of a partition written from Python
COUNTS_FILE = "_counts.json"  # validation's counts beside the validated rows

# The feature job's partition (features/dt=D/): one folder per table, and the run's stats.
FEATURE_STATS = "_stats.json"
CLEAN_EVENTS = "events"
ITEM_VOCAB = "item_vocab"
SEQUENCES = "sequences"
ITEM_POPULARITY = "item_popularity"
ITEM_POPULARITY_WINDOWS = "item_popularity_windows"
USER_RFM = "user_rfm"
CAMPAIGN_PERFORMANCE = "campaign_performance"
CAMPAIGN_ITEMS = "campaign_items"
SESSIONS_SUMMARY = "sessions_summary"
FEATURE_TABLES = (CLEAN_EVENTS, ITEM_VOCAB, SEQUENCES, ITEM_POPULARITY, ITEM_POPULARITY_WINDOWS, USER_RFM,
                  CAMPAIGN_PERFORMANCE, CAMPAIGN_ITEMS, SESSIONS_SUMMARY)

# The data checks that record a result per day (checks/dt=D/<check>.json); the gate reads both.
RAW_EVENTS_CHECK, FEATURES_CHECK = "raw_events", "features"
DATA_CHECKS = (RAW_EVENTS_CHECK, FEATURES_CHECK)


class _Paths(Protocol):  # pipelines.config.PathsConfig
    var_dir: str
    lake_dir: str
    gx_dir: str
    mlflow_dir: str
    reports_dir: str


class LakeLayout:
    """Every path of one deployment, from the ``paths`` config section, resolved against ``root``."""

    def __init__(self, paths: _Paths, root: Path):
        self._paths = paths
        self._root = Path(root)

    def _resolve(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self._root / path

    # Roots, as configured.
    @property
    def var_dir(self) -> Path:
        return self._resolve(self._paths.var_dir)

    @property
    def lake_dir(self) -> Path:
        return self._resolve(self._paths.lake_dir)

    @property
    def gx_dir(self) -> Path:
        return self._resolve(self._paths.gx_dir)

    @property
    def mlflow_dir(self) -> Path:
        return self._resolve(self._paths.mlflow_dir)

    @property
    def reports_dir(self) -> Path:
        return self._resolve(self._paths.reports_dir)

    # Zones of the lake: roots of dt=D partitions.
    @property
    def raw_events(self) -> Path:
        return self.lake_dir / "raw" / "events"

    @property
    def validated_events(self) -> Path:
        return self.lake_dir / "raw" / "validated"

    @property
    def quarantine(self) -> Path:
        return self.lake_dir / "quarantine" / "events"

    @property
    def catalog(self) -> Path:
        return self.lake_dir / "raw" / "catalog"

    @property
    def publishing_quarantine(self) -> Path:
        return self.lake_dir / "quarantine" / "publishing"

    @property
    def activation_exports(self) -> Path:
        return self.lake_dir / "activation" / "exports"

    @property
    def publications(self) -> Path:
        return self.lake_dir / "outputs" / "publications"

    @property
    def imports(self) -> Path:
        return self.lake_dir / "imports"

    @property
    def features(self) -> Path:
        return self.lake_dir / "features"

    @property
    def checks(self) -> Path:
        return self.lake_dir / "checks"

    @property
    def evaluations(self) -> Path:
        return self.lake_dir / "evaluations"

    @property
    def recommendations(self) -> Path:
        return self.lake_dir / "outputs" / "recommendations"

    @property
    def audiences(self) -> Path:
        return self.lake_dir / "outputs" / "audiences"

    @property
    def privacy_requests(self) -> Path:
        return self.lake_dir / "privacy" / "requests"

    @property
    def privacy_pending(self) -> Path:
        return self.lake_dir / "privacy" / "pending"

    @property
    def privacy_audit(self) -> Path:
        return self.lake_dir / "privacy" / "audit.jsonl"

    @property
    def suppression_list(self) -> Path:
        return self.lake_dir / "privacy" / "suppressed.jsonl"

    @property
    def champion_history(self) -> Path:
        return self.lake_dir / "registry" / "champion_history.jsonl"

    # One day's records.
    def check_record(self, ds: str, check: str) -> Path:
        """Where a day's data-check result is recorded (for the gate, the summary and the report)."""
        return partition_path(self.checks, ds) / f"{check}.json"

    def feature_stats(self, ds: str) -> Path:
        return partition_path(self.features, ds) / FEATURE_STATS

    def candidate_record(self, ds: str, model: str) -> Path:
        return partition_path(self.evaluations, ds) / "candidates" / f"{model}.json"

    def evaluation_record(self, ds: str) -> Path:
        return partition_path(self.evaluations, ds) / "evaluation.json"

    def decision_record(self, ds: str) -> Path:
        return partition_path(self.evaluations, ds) / "decision.json"

    def publication_record(self, ds: str) -> Path:
        return partition_path(self.publications, ds) / "publication.json"

    def rules_record(self, ds: str) -> Path:
        """What the business rules removed in the day's recommendations (beside them, not read as data)."""
        return partition_path(self.recommendations, ds) / "_rules.json"

    def lift_record(self, ds: str) -> Path:
        """The campaigns' audience lift measured on the day (beside the audiences)."""
        return partition_path(self.audiences, ds) / "_lift.json"

    def run_report(self, ds: str, suffix: str) -> Path:
        """``reports/run-<ds>.<suffix>``: ``html`` and ``md`` (the report), ``json`` (the run's record)."""
        return self.reports_dir / f"run-{ds}.{suffix}"

    # Local state outside the lake.
    @property
    def airflow_home(self) -> Path:
        return self.var_dir / "airflow"

    @property
    def logs_dir(self) -> Path:
        return self.var_dir / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.var_dir / "secrets"

    @property
    def spark_cluster_dir(self) -> Path:
        return self.var_dir / "spark-cluster"


def partition_path(root: Path, ds: str) -> Path:
    """The Hive-style folder of one day, ``root/dt=YYYY-MM-DD`` (a URI for a URI root, else a ``Path``)."""
    is_uri = isinstance(root, str) and "://" in root
    return fs.join(root if is_uri else Path(root), f"{DAY_PREFIX}{ds}")


def day_of(folder: Path) -> str:
    """``2026-11-27`` of ``.../dt=2026-11-27``."""
    return fs.name_of(folder).removeprefix(DAY_PREFIX)


def day_folders(root: Path) -> dict[str, Path]:
    """``{ds: folder}`` for every ``dt=YYYY-MM-DD`` folder directly under ``root`` (none if no root)."""
    found = {}
    for child in fs.list_dir(root, kind="dir"):
        if not fs.name_of(child).startswith(DAY_PREFIX):
            continue
        try:
            dt.date.fromisoformat(day_of(child))
        except ValueError:
            continue
        found[day_of(child)] = child
    return found


def window_partitions(root: Path, ds: str, window_days: int) -> list[Path]:
    """Existing day folders of ``root`` inside the trailing window ending at ``ds``, oldest first."""
    return partitions_between(root, *window_bounds(ds, window_days))


def partitions_between(root: Path, first: str, last: str) -> list[Path]:
    """Existing day folders of ``root`` with ``first <= day <= last``, oldest first."""
    folders = day_folders(root)
    return [folders[day] for day in sorted(folders) if first <= day <= last]


def latest_partition_before(root: Path, ds: str, required_child: str) -> Path | None:
    """The most recent ``root/dt=D`` with D < ds that holds ``required_child``; None if there is none."""
    folders = day_folders(root)
    earlier = [day for day in sorted(folders) if day < ds and fs.is_dir(fs.join(folders[day], required_child))]
    return folders[earlier[-1]] if earlier else None


def read_record(path: Path, since: dt.datetime | None = None) -> dict[str, Any]:
    """A JSON record; ``{}`` when it is missing or older than ``since`` (written before this run began).

    A record that exists but cannot be parsed reads as a failed check, so nothing downstream mistakes
    it for a pass.
    """
    if not is_fresh(path, since):
        return {}
    try:
        return fs.read_json(path)
    except ValueError:
        return {"success": False, "failures": [f"{path}: unreadable record"]}


def is_fresh(path: Path, since: dt.datetime | None) -> bool:
    """``path`` exists and (when ``since`` is given) was written after ``since`` (1 s of clock slack)."""
    if not fs.exists(path):
        return False
    return since is None or fs.modified_at(path) >= since.timestamp() - 1
