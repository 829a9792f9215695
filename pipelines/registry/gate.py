"""The promotion gate: the ``champion`` alias moves only on evidence, or on a person's recorded decision.

A candidate becomes champion when (1) the day's data checks passed, (2) its registry entry is sound and
its model loads, (3) it beats popularity on the same test split by the configured relative margin and
(4) it is not worse than the current champion, re-scored on the same split, beyond the configured
tolerance. A metric that is not a finite number, scores with NaN in them or a candidate without a
sound epoch (training stopped on a non-finite loss) refuse promotion before anything is compared.
The metric comparisons are MLflow's own ``validate_evaluation_results`` with
``MetricThreshold``s. Missing evidence (no data-check record, a champion that cannot be re-scored, a
registry that cannot be reached) keeps the current champion: the gate fails closed.

A run's ``promotion_mode`` can be ``force`` (promote the best candidate although the metric gates
failed) or ``forbid`` (promote nothing); both need a reason and are recorded with who asked. Neither
overrides (1) or (2): a bad data day or a broken model never reaches customers.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.io import write_json_atomic
from pipelines.registry.champion import (
    FORCE,
    PROMOTE,
    approve_for_day,
    champion_as_of,
    current_user,
    load_registered_model,
    read_history,
    set_challenger,
)
from pipelines.registry.store import configure_mlflow

log = logging.getLogger(__name__)
MODES = ("auto", "force", "forbid")


class PromotionControlError(ValueError):
    """A run asked to force or forbid promotion without saying why, or with an unknown mode."""


def promotion_control(mode: str | None = "auto", reason: str | None = "", who: str | None = None,
                      run_id: str | None = None) -> dict[str, Any]:
    """The run's manual control of the gate, checked: forcing or forbidding needs a reason."""
    mode = mode or "auto"
    if mode not in MODES:
        raise PromotionControlError(f"promotion_mode={mode!r}: use one of {list(MODES)}")
    if mode != "auto" and not (reason or "").strip():
        raise PromotionControlError(f"promotion_mode={mode}: give promotion_reason (it is kept in the history)")
    return {"mode": mode, "reason": (reason or "").strip(), "who": who or current_user(), "run_id": run_id}


def promote_champion(config: PipelineConfig, ds: str, evaluation: dict[str, Any],
                     control: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decide, move the alias if the gate (or a forced run) says so, and record the reasons where people look."""
    control = control or promotion_control()
    metric = evaluation["metric"]
    best = max(evaluation["candidates"], key=lambda c: _finite_or_worst(c["test"].get(metric)))
    decision = {"ds": ds, "metric": metric, "candidate": {k: best[k] for k in ("model", "version", "run_id")},
                "candidate_value": best["test"][metric], "popularity_value": evaluation["popularity"][metric],
                "control": control, "promoted": False}
    try:
        configure_mlflow(config)
        champion = champion_as_of(config, ds)  # the bar as of ds, also in a backfill
    except Exception as err:  # noqa: BLE001 - an unreachable store must keep the champion, not crash the gate
        return _keep(decision, None, [f"MLflow store {config.tracking_uri} cannot be reached ({_short(err)}); "
                                      "nothing was moved (fail closed)"], [])
    decision["previous_champion_version"] = str(champion.version) if champion else None
    not_finite = _check_finite(best, evaluation)
    blocking = _check_data(config, ds) + not_finite + _check_candidate(config, best)
    gate = [] if not_finite else _check_metrics(config, best, evaluation)  # MLflow raises on NaN
    decision["gate_reasons"] = gate
    champion_record = evaluation.get("champion") or {}
    if champion_record.get("not_comparable"):
        decision["notes"] = [f"champion v{champion_record['version']} not compared: "
                             f"{champion_record['not_comparable']}"]
    if blocking or (gate and control["mode"] != "force"):
        decision = _keep(decision, champion, blocking + gate, blocking)
    elif control["mode"] == "forbid":
        decision = _keep(decision, champion, [f"promotion forbidden by {control['who']}: {control['reason']}"], [])
        decision["verdict"] = f"forbidden: {control['reason']} (by {control['who']}); the gate said " + (
            "; ".join(gate) if gate else "promote")
    elif champion is not None and str(champion.version) == str(best["version"]):
        moved = _move_of_this_run(config, decision, best, control)
        if moved is not None:  # a rerun after a crash past the move: the decision is the move's, again
            decision = _promoted(decision, best, control, gate, moved)
        else:
            decision.update(champion_version=str(champion.version), reasons=[],
                            verdict=f"unchanged: version {champion.version} is already champion")
    else:
        decision = _promote(config, decision, best, control, gate)
    _record(config, evaluation, best, decision)
    return decision


def _keep(decision: dict[str, Any], champion, reasons: list[str], blocking: list[str]) -> dict[str, Any]:
    version = str(champion.version) if champion is not None else decision.get("previous_champion_version")
    return {**decision, "promoted": False, "champion_version": version, "reasons": reasons,
            "blocking_reasons": blocking, "verdict": "rejected: " + "; ".join(reasons)}


def promote_and_record(config: PipelineConfig, ds: str, evaluation: dict[str, Any],
                       control: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``promote_champion`` stage: decide (``promote_champion``) and keep the decision in the lake."""
    decision = promote_champion(config, ds, evaluation, control)
    write_json_atomic(config.layout.decision_record(ds), decision)
    return decision


def _promote(config, decision, best, control, gate) -> dict[str, Any]:
    action = FORCE if control["mode"] == "force" else PROMOTE
    reason = control["reason"] if action == FORCE else f"gate passed on {decision['ds']}: {decision['metric']} " \
        f"{decision['candidate_value']:.4f} vs popularity {decision['popularity_value']:.4f}"
    try:
        entry = approve_for_day(config, best["version"], action=action, ds=decision["ds"], who=control["who"],
                                reason=reason, run_id=control.get("run_id"),
                                previous=decision["previous_champion_version"])
    except Exception as err:  # noqa: BLE001 - a half-done move is reported, the old champion stays
        return _keep(decision, None, [f"could not move the alias to version {best['version']} ({_short(err)})"], [])
    return _promoted(decision, best, control, gate, entry)


def _promoted(decision, best, control, gate, entry) -> dict[str, Any]:
    verdict = f"promoted {best['model']} version {best['version']}"
    if entry["action"] == FORCE:
        verdict = f"forced: {verdict} by {control['who']} ({control['reason']}); the gate said " + (
            "; ".join(gate) if gate else "promote")
    return {**decision, "promoted": True, "champion_version": str(best["version"]), "reasons": [],
            "verdict": verdict, "history_entry": entry, "previous_champion_version": entry.get("previous_version")}


def _move_of_this_run(config: PipelineConfig, decision, best, control) -> dict[str, Any] | None:
    """The history entry of this run (same day, same Airflow run id) moving the alias to ``best``.

    A retried task whose first try moved the alias and was killed before it wrote its decision gets
    the same decision again. Without a run id (a call from the shell) a rerun is a new decision.
    """
    if not control.get("run_id"):
        return None
    history = read_history(config)
    last = history[-1] if history else {}
    wanted = {"action": FORCE if control["mode"] == "force" else PROMOTE, "ds": decision["ds"],
              "version": str(best["version"]), "run_id": control.get("run_id")}
    return last if all(last.get(key) == value for key, value in wanted.items()) else None


def _check_data(config: PipelineConfig, ds: str) -> list[str]:
    reasons = []
    for check in lake.DATA_CHECKS:
        record = config.layout.check_record(ds, check)
        if not fs.exists(record):
            reasons.append(f"no {check} data-check record at {record} (fail closed)")
        elif not lake.read_record(record).get("success"):
            reasons.append(f"{check} data checks failed or their record is unreadable (see {record})")
    return reasons


def _finite_or_worst(value: Any) -> float:
    try:
        return float(value) if math.isfinite(float(value)) else -math.inf
    except (TypeError, ValueError):
        return -math.inf


def _check_finite(best: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """Every number the decision rests on is finite, and the candidate was trained to a sound epoch."""
    metric, reasons = evaluation["metric"], []
    sides = [(f"candidate {best['model']} v{best['version']} test", best["test"]),
             ("popularity", evaluation["popularity"])]
    champion = evaluation.get("champion")
    if champion and "test" in champion:
        sides.append((f"champion v{champion['version']} test", champion["test"]))
    for name, test in sides:
        if _finite_or_worst(test.get(metric)) == -math.inf:
            reasons.append(f"{name} {metric} is {test.get(metric)} (not a finite number): refused, nothing "
                           "is compared on it (fail closed)")
        elif test.get("non_finite_rows"):
            reasons.append(f"{name} scores had NaN or infinite values for {test['non_finite_rows']} users: "
                           "refused (fail closed)")
    if best.get("stopped_reason") == "non_finite_loss" or best.get("best_epoch") == 0:
        reasons.append(f"candidate {best['model']} v{best['version']} has no sound epoch (training stopped: "
                       f"{best.get('stopped_reason')}, best epoch {best.get('best_epoch')}): refused")
    return reasons


def _check_candidate(config: PipelineConfig, best: dict[str, Any]) -> list[str]:
    """The candidate's registry entry exists, belongs to its run and its model loads."""
    from mlflow import MlflowClient

    name, version = config.promotion.registered_model, best["version"]
    try:
        entry = MlflowClient().get_model_version(name, version)
    except Exception as err:  # noqa: BLE001
        return [f"candidate version {version} of {name} is not in the registry ({_short(err)}) (fail closed)"]
    if entry.run_id != best["run_id"]:
        return [f"registry entry {name}/{version} belongs to run {entry.run_id}, not to the candidate's run "
                f"{best['run_id']} (corrupt entry; fail closed)"]
    try:
        load_registered_model(entry)
    except Exception as err:  # noqa: BLE001
        return [f"candidate version {version} cannot be loaded ({_short(err)}) (fail closed)"]
    return []


def _check_metrics(config: PipelineConfig, best: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    import mlflow
    from mlflow.models import EvaluationResult, MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    metric, margin = evaluation["metric"], config.promotion.min_lift_over_popularity
    candidate = EvaluationResult(metrics={metric: best["test"][metric]}, artifacts={})
    popularity = EvaluationResult(metrics={metric: evaluation["popularity"][metric]}, artifacts={})
    gates = [("popularity", {metric: MetricThreshold(
        greater_is_better=True,
        **({"min_relative_change": float(margin)} if margin > 0 else {"min_absolute_change": 1e-9}))}, popularity)]
    champion = evaluation.get("champion")
    if champion and "error" in champion:
        return [f"champion version {champion['version']} could not be re-scored ({champion['error']}); "
                "keeping it (fail closed)"]
    comparable = champion and "test" in champion  # one of another vocabulary counts as absent
    if comparable:
        floor = champion["test"][metric] - config.promotion.champion_tolerance
        gates.append((f"champion v{champion['version']}",
                      {metric: MetricThreshold(threshold=floor, greater_is_better=True)}, None))
    reasons = []
    for name, thresholds, baseline in gates:
        try:
            mlflow.validate_evaluation_results(thresholds, candidate, baseline)
        except ModelValidationFailedException as err:
            reasons.append(f"against {name}: {str(err.message).strip()}")
    return reasons + _check_evidence(config, best, evaluation, champion if comparable else None)


def _check_evidence(config: PipelineConfig, best: dict[str, Any], evaluation: dict[str, Any],
                    champion: dict[str, Any] | None) -> list[str]:
    """Enough test users, and lifts whose confidence intervals clear the margins at their lower bounds."""
    promotion, reasons = config.promotion, []
    users = evaluation.get("num_test_users", 0)
    if users < promotion.min_test_users:
        reasons.append(f"only {users} test users, fewer than promotion.min_test_users={promotion.min_test_users}: "
                       "too little evidence to promote on (a few hits decide such a comparison)")
    evidence = best.get("evidence") or {}
    if "error" in evidence or "popularity" not in evidence:
        return [*reasons, f"no confidence interval of the lift ({evidence.get('error', 'not evaluated')}); "
                          "fail closed"]
    lift, margin = evidence["popularity"], promotion.min_lift_over_popularity
    if lift["relative_low"] < margin or (margin == 0 and lift["relative_low"] <= 0):
        reasons.append(f"lift over popularity {_pct(lift['relative'])} ({lift['confidence']:.0%} interval "
                       f"{_pct(lift['relative_low'])} .. {_pct(lift['relative_high'])} over {lift['users']} users) "
                       f"does not clear min_lift_over_popularity={margin:.0%} at its lower bound")
    versus = evidence.get("champion")
    if champion is not None and versus and versus["difference_low"] < -promotion.champion_tolerance:
        reasons.append(f"against champion v{champion['version']}: NDCG difference {versus['difference']:+.4f} "
                       f"({versus['confidence']:.0%} interval {versus['difference_low']:+.4f} .. "
                       f"{versus['difference_high']:+.4f}) is not above -champion_tolerance="
                       f"{-promotion.champion_tolerance:.4f} at its lower bound")
    return reasons


def _pct(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else "+inf"


def _record(config: PipelineConfig, evaluation: dict[str, Any], best: dict[str, Any],
            decision: dict[str, Any]) -> None:
    """The verdict on the best candidate's run and version; every other candidate says why it was not chosen."""
    from mlflow import MlflowClient

    (log.info if decision["promoted"] else log.warning)("promotion gate %s: %s", decision["ds"], decision["verdict"])
    for reason in decision.get("reasons", []):
        log.warning("promotion gate %s: reason: %s", decision["ds"], reason)
    client, name = MlflowClient(), config.promotion.registered_model
    try:
        for candidate in evaluation["candidates"]:
            chosen = candidate["version"] == best["version"]
            verdict = decision["verdict"] if chosen else (
                f"not chosen: {best['model']} v{best['version']} scored higher on {decision['metric']}")
            client.set_model_version_tag(name, candidate["version"], "pipeline.gate", verdict[:5000])
            client.set_model_version_tag(name, candidate["version"], "pipeline.gate.reasons",
                                         json.dumps(decision.get("reasons", []) if chosen else [])[:5000])
        client.set_tag(best["run_id"], f"pipeline.gate.{decision['ds']}", decision["verdict"][:5000])
        client.log_text(best["run_id"], json.dumps(decision, indent=2, default=str), f"gate/{decision['ds']}.json")
        if not decision.get("blocking_reasons") and str(best["version"]) != str(decision.get("champion_version")):
            set_challenger(config, best["version"])
    except Exception as err:  # noqa: BLE001 - the decision stands (and is in the lake); say what was not tagged
        log.error("promotion gate %s: could not record the verdict in MLflow (%s)", decision["ds"], _short(err))


def _short(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
