"""Model versions trained on data that held a person who was later erased: marked, and kept from serving again.

A model's weights are not rows that can be deleted; what an erasure can do is train the next model
without the person (their rows are gone from the lake) and make sure an older model, trained while
they were in the data, is not brought back unawares. Every registered version whose training window
(``pipeline.training_window``) reaches a day that held an erased person gets the tag
``pipeline.erased_training_data`` with the requests' ids; ``rollback_champion`` refuses such a version
unless told ``--allow-erased-training-data`` with a reason. The live champion keeps serving until the
next night's model replaces it; its scores never reach the person, whose features are gone.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import PipelineConfig
from pipelines.registry.store import configure_mlflow

ERASED_TAG = "pipeline.erased_training_data"
WINDOW_TAG = "pipeline.training_window"


def mark_erased_training_data(config: PipelineConfig, days_by_request: dict[str, set[str]]) -> dict[str, list[str]]:
    """Tag the versions whose training window holds one of each request's days; versions tagged per request."""
    from mlflow import MlflowClient

    configure_mlflow(config)
    client = MlflowClient()
    name = config.promotion.registered_model
    marked: dict[str, list[str]] = {request_id: [] for request_id in days_by_request}
    for version in client.search_model_versions(f"name = '{name}'"):
        start, _, end = (version.tags or {}).get(WINDOW_TAG, "..").partition("..")
        hits = sorted(request_id for request_id, days in days_by_request.items()
                      if any(start <= day <= end for day in days) or (not start and days))
        if not hits:
            continue
        already = [entry for entry in (version.tags or {}).get(ERASED_TAG, "").split(",") if entry]
        new = sorted(set(already) | set(hits))
        if new != sorted(already):
            client.set_model_version_tag(name, version.version, ERASED_TAG, ",".join(new)[:5000])
        for request_id in hits:
            marked[request_id].append(str(version.version))
    return marked


def erased_requests_of(version: Any) -> list[str]:
    """The erasure requests whose person was in the version's training data ([] when none)."""
    return [entry for entry in (getattr(version, "tags", None) or {}).get(ERASED_TAG, "").split(",") if entry]
