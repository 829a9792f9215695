"""What a model version was made from, as MLflow tags and an mlflow.data dataset.

The day and its data interval, the training window, the feature and vocabulary versions (a digest of
the settings the feature job ran with), the content digest of the training data and the git commit
of the code: enough to say, months later, which data and code produced a champion.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

from pipelines.config import REPO_ROOT
from pipelines.dates import day_interval
from pipelines.features.store import FeaturePartition


def code_version() -> str:
    """The git commit of the code that runs, with ``-dirty`` when the tree has local changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def lineage_tags(features: FeaturePartition) -> dict[str, str]:
    """What a model version was made from: the day, the window, feature and vocabulary versions, the code."""
    start, end = day_interval(features.ds)
    stats = features.stats
    settings = {"params": stats.get("params"), "clean_signature": stats.get("clean_signature")}
    return {"pipeline.data_interval": f"{start.isoformat()}/{end.isoformat()}",
            "pipeline.training_window": f"{stats.get('window_start')}..{stats.get('window_end')}",
            "pipeline.feature_version": f"{features.ds}:{digest(settings)}",
            "pipeline.vocab_version": str(stats.get("vocab_version", features.ds)),
            "pipeline.dataset_digest": training_dataset(features).digest,
            "pipeline.code_version": code_version()}


def training_dataset(features: FeaturePartition):
    """The day's features as an ``mlflow.data`` dataset whose digest is the content digest of the data."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    return MetaDataset(resolve_dataset_source(features.path.as_uri()), name=f"features-{features.ds}",
                       digest=features.digest)


def digest(payload: Any) -> str:
    """A short, stable digest of a JSON-able payload (key order does not matter)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
