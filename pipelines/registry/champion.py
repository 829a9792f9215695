"""The registry side of promotion: the champion alias, its history, rollback and lineage tags.

MLflow keeps an alias's current target, not who set it when or why. Every move of the champion alias
(by the gate, by a forced promotion, by a rollback) is therefore appended to a small table in the lake,
``registry/champion_history.jsonl``: when, which day, which version replaced which, who and why. A
rollback reads it to find the previous approved version, and the run report shows it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.io import write_json_atomic, write_text_atomic
from pipelines.registry.erased import erased_requests_of
from pipelines.registry.store import configure_mlflow

log = logging.getLogger(__name__)
PROMOTE, FORCE, ROLLBACK = "promote", "force", "rollback"
_MOVE_KEYS = ("action", "ds", "version", "previous_version", "run_id")
APPROVALS = (PROMOTE, FORCE)


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unreachable, no such version, nothing to roll back to)."""


def current_user() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def read_history(config: PipelineConfig) -> list[dict[str, Any]]:
    return fs.read_json_lines(config.layout.champion_history)


def append_history(config: PipelineConfig, entry: dict[str, Any]) -> dict[str, Any]:
    """Add one move of the alias; the file is rewritten through a rename, so readers never see half a line.

    The same move as the last entry (a rerun after a crash between the entry and the alias) is not
    added twice: that entry is returned.
    """
    path = config.layout.champion_history
    history = read_history(config)
    if history and all(history[-1].get(key) == entry.get(key) for key in _MOVE_KEYS):
        return history[-1]
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **entry}
    lines = [json.dumps(e, sort_keys=True) for e in [*history, entry]]
    write_text_atomic(path, "\n".join(lines) + "\n")
    write_json_atomic(path.with_suffix(".latest.json"), entry)
    return entry


def move_champion(config: PipelineConfig, version: str, *, action: str, ds: str | None, who: str, reason: str,
                  run_id: str | None, previous: str | None) -> dict[str, Any]:
    """Record the move in the history, then point the champion alias at ``version`` and tag the version.

    The history entry comes first, so no move of the alias is ever unrecorded; a process killed
    between the two is completed by its rerun (the entry is not repeated, see ``append_history``).
    """
    from mlflow import MlflowClient

    client, promotion = MlflowClient(), config.promotion
    model = client.get_model_version(promotion.registered_model, version)
    entry = append_history(config, {"action": action, "ds": ds, "version": str(version),
                                    "model": model.tags.get("pipeline.model"), "previous_version": previous,
                                    "who": who, "reason": reason, "run_id": run_id})
    client.set_registered_model_alias(promotion.registered_model, promotion.champion_alias, version)
    if action in APPROVALS:
        client.set_model_version_tag(promotion.registered_model, version, "pipeline.promoted_ds", ds or "-")
    client.set_model_version_tag(promotion.registered_model, version, "pipeline.champion_event",
                                 f"{action} ({ds or 'manual'}) by {who}: {reason}"[:5000])
    log.warning("champion of %s: version %s -> %s (%s by %s: %s)", promotion.registered_model, previous, version,
                action, who, reason)
    return entry


def later_days_decided(config: PipelineConfig, ds: str) -> list[str]:
    """Days after ``ds`` whose gate already decided, or for which the champion was moved."""
    decided = {day for day in lake.day_folders(config.layout.evaluations)
               if fs.exists(config.layout.decision_record(day))}
    decided |= {entry["ds"] for entry in read_history(config) if entry.get("ds")}
    return sorted(day for day in decided if day > ds)


def approve_for_day(config: PipelineConfig, version: str, *, action: str, ds: str, who: str, reason: str,
                    run_id: str | None, previous: str | None) -> dict[str, Any]:
    """Record that the gate (or a person) made ``version`` champion from ``ds`` on; move the live alias
    only when no later day was decided yet.

    The same approval recorded before (a rerun, a backfill or a retry of ``ds``) is not recorded again:
    its entry is returned, and the alias is touched only to finish that move when it was the last
    one (a process killed between the entry and the alias). A backfill of an earlier day is recorded
    with ``live: false`` and leaves the alias to the later days' decisions.
    """
    history = read_history(config)
    done = next((entry for entry in reversed(history) if entry["action"] in APPROVALS and entry.get("ds") == ds
                 and entry["version"] == str(version)), None)
    if done is not None:
        if done is history[-1] and done.get("live", True):
            _point_alias(config, str(version), done)
        return done
    later = later_days_decided(config, ds)
    if not later:
        return move_champion(config, version, action=action, ds=ds, who=who, reason=reason, run_id=run_id,
                             previous=previous)
    entry = append_history(config, {"action": action, "ds": ds, "version": str(version), "previous_version": previous,
                                    "who": who, "reason": reason, "run_id": run_id, "live": False,
                                    "note": f"backfill: later days {later[0]}..{later[-1]} already decided; "
                                            "the live alias is theirs"})
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag(config.promotion.registered_model, version, "pipeline.promoted_ds", ds)
    log.warning("champion as of %s: version %s (recorded, alias not moved: later days %s decided)", ds, version,
                later)
    return entry


def _point_alias(config: PipelineConfig, version: str, entry: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client, promotion = MlflowClient(), config.promotion
    client.set_registered_model_alias(promotion.registered_model, promotion.champion_alias, version)
    if entry["action"] in APPROVALS:
        client.set_model_version_tag(promotion.registered_model, version, "pipeline.promoted_ds", entry.get("ds") or "-")


def set_challenger(config: PipelineConfig, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(config.promotion.registered_model, config.promotion.challenger_alias,
                                              version)


def previous_approved(history: list[dict[str, Any]], current: str | None) -> str | None:
    """The version the current champion replaced when it was last approved (promoted or forced)."""
    for entry in reversed(history):
        if entry["version"] == current and entry["action"] in APPROVALS:
            return entry.get("previous_version")
    return None


def rollback_champion(config: PipelineConfig, reason: str, who: str, run_id: str | None = None,
                      to_version: str | None = None, allow_erased_training_data: bool = False) -> dict[str, Any]:
    """Move the champion back to the previous approved version (or ``to_version``, which must have been one).

    A version trained on data that held a person erased since (``registry.erased``) is refused unless
    ``allow_erased_training_data`` (the reason then says why, and the history keeps both).
    """
    if not reason or not reason.strip():
        raise RegistryError("rollback: give a reason (make rollback REASON='...'); it is kept in the history")
    history = read_history(config)
    configure_mlflow(config)
    champion = current_champion(config)
    current = str(champion.version) if champion else None
    done = next((e for e in history if run_id and e.get("run_id") == run_id and e["action"] == ROLLBACK), None)
    if done is not None and done["version"] == current:  # a retried task: this run's rollback happened
        return {**done, "rolled_back": False, "note": f"already rolled back by run {run_id}"}
    if done is not None:  # killed between its history entry and the alias: finish that move
        entry = move_champion(config, done["version"], action=ROLLBACK, ds=None, who=done["who"],
                              reason=done["reason"], run_id=run_id, previous=done["previous_version"])
        return {**entry, "rolled_back": True}
    target = str(to_version) if to_version else previous_approved(history, current)
    approved = {e["version"] for e in history if e["action"] in APPROVALS}
    if target is None:
        raise RegistryError(f"rollback: champion version {current} has no previous approved version in "
                            f"{config.layout.champion_history}; name one with --to-version")
    if target not in approved:
        raise RegistryError(f"rollback: version {target} was never an approved champion (approved: "
                            f"{sorted(approved, key=int) or 'none'}); pick one of those")
    if target == current:
        raise RegistryError(f"rollback: version {target} is already the champion")
    target_version = _version(config, target)
    erased = erased_requests_of(target_version)
    if erased and not allow_erased_training_data:
        raise RegistryError(
            f"rollback: version {target} was trained on data that held {len(erased)} person(s) erased since "
            f"(requests {', '.join(erased[:5])}); restoring it would serve a model that learnt from them. The "
            f"champion {current} is kept. If you must, pass --allow-erased-training-data (make rollback "
            "ALLOW_ERASED=1) and say why in the reason")
    try:
        load_registered_model(target_version)
    except Exception as err:  # noqa: BLE001 - never move the alias to a model that cannot serve
        raise RegistryError(f"rollback: version {target} cannot be loaded ({err}); champion {current} is kept") from err
    if erased:
        reason = f"{reason} [restored although trained on erased people's data: {', '.join(erased)}]"
    entry = move_champion(config, target, action=ROLLBACK, ds=None, who=who, reason=reason, run_id=run_id,
                          previous=current)
    return {**entry, "rolled_back": True}


def version_as_of(history: list[dict[str, Any]], ds: str) -> str | None:
    """The champion version as of day ``ds`` by the history: after the moves made for ``ds`` and the days before.

    A move made for a day counts from that day, whenever it was made (a backfill of an earlier day
    may be recorded after later days); of two moves for the same day the later one counts. A
    rollback (no day) counts from the latest day recorded before it, the night whose outputs it
    replaces. None when no move counts yet.
    """
    effective, latest = [], ""
    for order, entry in enumerate(history):
        effective.append((entry.get("ds") or latest, order, entry["version"]))
        latest = max(latest, entry.get("ds") or "")
    counted = [move for move in effective if move[0] <= ds]
    return max(counted)[2] if counted else None


def champion_as_of(config: PipelineConfig, ds: str):
    """The model version that was champion as of ``ds`` (see ``version_as_of``), or None.

    The gate of ``ds`` compares against it and scoring of ``ds`` uses it. For the latest day (no later
    day decided yet: the nightly run, or a rerun of it) that is the live alias's target, wherever it
    was set from. For an earlier day (a backfill or a rerun after later days ran) it is the history's,
    so that day is judged and scored as its nightly run was, never by a model trained on later data
    (which holds that day's test targets).
    """
    if not later_days_decided(config, ds):
        return current_champion(config)
    version = version_as_of(read_history(config), ds)
    return _version(config, version) if version is not None else None


def current_champion(config: PipelineConfig):
    """The model version behind the champion alias, or None when there is none yet."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(config.promotion.registered_model,
                                                         config.promotion.champion_alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def load_registered_model(version):
    """Load a registered Keras model version (the model classes must be registered first)."""
    import mlflow

    from pipelines.models import register_keras_classes

    register_keras_classes()  # the custom Keras classes, for deserialisation
    return mlflow.keras.load_model(f"models:/{version.name}/{version.version}")


def _version(config: PipelineConfig, version: str):
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(config.promotion.registered_model, version)
