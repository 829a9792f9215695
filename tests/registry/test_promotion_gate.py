"""The promotion gate, the champion history and rollback on a real SQLite MLflow with tiny Keras models.

Each test starts from the session's trained registry (``tests/trained_registry.py``) with no champion
and no history, and sets the aliases and history itself.
"""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines import lake
from tests.trained_registry import (
    DS,
    artifact_dir,
    challenger_version,
    champion_version,
    evaluate,
    promote,
    version_tags,
)


def test_candidates_are_registered_with_their_lineage(registry):
    config, weak, strong = registry
    tags = version_tags(config, strong["version"])
    for key in ("pipeline.data_interval", "pipeline.dataset_digest", "pipeline.feature_version",
                "pipeline.vocab_version", "pipeline.code_version", "pipeline.data_digest"):
        assert tags.get(key), key
    assert tags["pipeline.data_interval"].startswith(f"{DS}T00:00:00+00:00/")
    assert weak["version"] != strong["version"]


def test_one_epoch_challenger_is_not_promoted_and_says_why(fresh):
    config, weak, strong = fresh
    assert promote(config, strong)["promoted"]
    decision = promote(config, weak)
    assert not decision["promoted"] and champion_version(config) == strong["version"]
    assert any(f"champion v{strong['version']}" in reason for reason in decision["reasons"])
    tags = version_tags(config, weak["version"])
    assert tags["pipeline.gate"].startswith("rejected") and json.loads(tags["pipeline.gate.reasons"])
    assert challenger_version(config) == weak["version"]


def test_better_challenger_is_promoted_and_history_records_both_moves(fresh):
    from pipelines.registry.champion import read_history

    config, weak, strong = fresh
    forced = promote(config, weak, mode="force", reason="bootstrap the registry", who="ada")
    assert forced["promoted"] and forced["verdict"].startswith("forced")
    decision = promote(config, strong)
    assert decision["promoted"] and champion_version(config) == strong["version"]
    history = read_history(config)
    assert [(e["action"], e["version"], e["previous_version"]) for e in history] == [
        ("force", weak["version"], None), ("promote", strong["version"], weak["version"])]
    assert history[0]["who"] == "ada" and history[0]["reason"] == "bootstrap the registry"
    assert not promote(config, strong)["promoted"]  # a rerun: already champion, no new history entry
    assert len(read_history(config)) == 2


def test_forbidden_run_promotes_nothing_and_a_reason_is_required(fresh):
    from pipelines.registry.gate import PromotionControlError, promotion_control

    config, weak, strong = fresh
    decision = promote(config, strong, mode="forbid", reason="campaign freeze", who="bob")
    assert not decision["promoted"] and champion_version(config) is None and "campaign freeze" in decision["verdict"]
    with pytest.raises(PromotionControlError, match="promotion_reason"):
        promotion_control("force", "")


def test_rollback_restores_the_previous_champion_and_scoring_uses_it(fresh):
    from pipelines.registry.champion import RegistryError, read_history, rollback_champion
    from pipelines.scoring.recommendations import write_recommendations

    config, weak, strong = fresh
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    promote(config, strong)
    entry = rollback_champion(config, "complaints about stale items", "carol", run_id="manual__1")
    assert entry["rolled_back"] and champion_version(config) == weak["version"]
    assert rollback_champion(config, "retry", "carol", run_id="manual__1")["rolled_back"] is False  # idempotent
    assert [e["action"] for e in read_history(config)] == ["force", "promote", "rollback"]
    assert write_recommendations(config, DS)["model_version"] == weak["version"]
    with pytest.raises(RegistryError, match="no previous approved version"):
        rollback_champion(config, "again", "carol")


def test_rollback_refuses_a_version_trained_on_erased_peoples_data_unless_allowed(fresh):
    from mlflow import MlflowClient

    from pipelines.registry.champion import RegistryError, rollback_champion
    from pipelines.registry.erased import ERASED_TAG, WINDOW_TAG, mark_erased_training_data

    config, weak, strong = fresh
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    promote(config, strong)
    client, name = MlflowClient(), config.promotion.registered_model
    start, _, end = client.get_model_version(name, weak["version"]).tags[WINDOW_TAG].partition("..")
    marked = mark_erased_training_data(config, {"e-1": {end}, "e-2": {"1999-01-01"}})
    try:
        assert weak["version"] in marked["e-1"] and marked["e-2"] == []
        assert client.get_model_version(name, weak["version"]).tags[ERASED_TAG] == "e-1"
        with pytest.raises(RegistryError, match="trained on data that held 1 person.*allow-erased-training-data"):
            rollback_champion(config, "stale items", "carol")
        assert champion_version(config) == strong["version"]
        entry = rollback_champion(config, "the new model is broken", "carol", allow_erased_training_data=True)
        assert entry["rolled_back"] and champion_version(config) == weak["version"]
        assert "erased people's data: e-1" in entry["reason"]
    finally:
        for version in client.search_model_versions(f"name = '{name}'"):
            if ERASED_TAG in version.tags:  # the session's registry is shared: leave it as found
                client.delete_model_version_tag(name, version.version, ERASED_TAG)


def test_store_that_cannot_be_reached_keeps_the_champion(fresh, monkeypatch):
    from pipelines.registry.gate import promote_champion

    config, weak, strong = fresh
    evaluation = evaluate(config, strong)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = config.model_copy(update={"mlflow": config.mlflow.model_copy(
        update={"tracking_uri": "http://127.0.0.1:9"})})
    decision = promote_champion(unreachable, DS, evaluation)
    assert not decision["promoted"] and "cannot be reached" in decision["verdict"]


def test_missing_evidence_fails_closed(fresh):
    from mlflow import MlflowClient

    config, weak, strong = fresh
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    missing = dict(strong, version="999")  # a registry entry that does not exist
    decision = promote(config, missing, mode="force", reason="try it anyway")
    assert not decision["promoted"] and "not in the registry" in decision["verdict"]
    corrupt = dict(strong, run_id="0" * 32)  # the entry belongs to another run
    assert "corrupt entry" in promote(config, corrupt)["verdict"]
    # A champion whose artifact is gone: registered from a copy that is then deleted.
    client, name = MlflowClient(), config.promotion.registered_model
    source = client.get_model_version(name, weak["version"])
    copy = config.layout.var_dir / "gone-model"
    shutil.copytree(artifact_dir(source), copy)
    broken = client.create_model_version(name, copy.as_uri(), run_id=source.run_id)
    client.set_registered_model_alias(name, config.promotion.champion_alias, broken.version)
    shutil.rmtree(copy)
    decision = promote(config, strong)
    assert not decision["promoted"] and champion_version(config) == str(broken.version)
    assert "could not be re-scored" in decision["verdict"]
    (config.layout.check_record(DS, lake.FEATURES_CHECK)).rename(config.layout.var_dir / "features.json")
    try:
        assert "no features data-check record" in promote(config, strong, mode="force", reason="x")["verdict"]
    finally:
        (config.layout.var_dir / "features.json").rename(config.layout.check_record(DS, lake.FEATURES_CHECK))


def test_nan_metrics_or_nan_scores_are_refused_even_when_forced_and_the_champion_stays(fresh):
    from pipelines.registry.gate import promote_champion, promotion_control

    config, weak, strong = fresh
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    evaluation = evaluate(config, strong)
    for test, says in (({**strong["test"], "ndcg_at_10": float("nan")}, "ndcg_at_10 is nan"),
                       ({**strong["test"], "non_finite_rows": 5}, "NaN or infinite values for 5 users"),
                       ({**strong["test"], "ndcg_at_10": float("inf")}, "ndcg_at_10 is inf")):
        broken = {**evaluation, "candidates": [dict(strong, test=test)]}
        decision = promote_champion(config, DS, broken, promotion_control("force", "ship it anyway", "bob"))
        assert not decision["promoted"] and says in decision["verdict"], decision["verdict"]
        assert champion_version(config) == weak["version"]
        assert says in version_tags(config, strong["version"])["pipeline.gate"]
    unsound = {**evaluation, "candidates": [dict(strong, stopped_reason="non_finite_loss", best_epoch=0)]}
    assert "no sound epoch" in promote_champion(config, DS, unsound)["verdict"]


def test_no_promotion_on_too_few_test_users_or_a_lift_whose_interval_does_not_clear_the_margin(fresh):
    from pipelines.registry.gate import promote_champion

    config, weak, strong = fresh
    evaluation = evaluate(config, strong)
    [scored] = evaluation["candidates"]
    lift = scored["evidence"]["popularity"]
    assert lift["users"] == evaluation["num_test_users"] and lift["relative_low"] > 0  # the strong one does lift
    strict = config.model_copy(update={"promotion": config.promotion.model_copy(update={"min_test_users": 1000})})
    decision = promote_champion(strict, DS, evaluation)
    assert not decision["promoted"] and f"only {evaluation['num_test_users']} test users" in decision["verdict"]
    thin = dict(scored, evidence={"popularity": {**lift, "relative_low": -0.02}})
    decision = promote_champion(config, DS, {**evaluation, "candidates": [thin]})
    assert not decision["promoted"] and "does not clear min_lift_over_popularity=0% at its lower bound" in \
        decision["verdict"] and champion_version(config) is None
    assert promote_champion(config, DS, evaluation)["promoted"]


def test_a_champion_of_another_vocabulary_is_treated_as_absent_and_the_gate_says_why(fresh, tmp_path):
    from mlflow import MlflowClient

    from pipelines.features.store import load_feature_partition
    from pipelines.training.evaluation import vocabulary_mismatch

    config, weak, strong = fresh
    features = load_feature_partition(config.layout.features, DS)
    assert vocabulary_mismatch(config, DS, features) is None  # its own vocabulary
    assert "not in this lake" in vocabulary_mismatch(config, "2019-10-01", features)
    other = lake_config_with_vocab(tmp_path, features, [f"sku-{i}" for i in range(len(features.vocab))])
    assert "not numbered as today's" in vocabulary_mismatch(other, DS, features)
    promote(config, weak, mode="force", reason="bootstrap", who="ada")
    name = config.promotion.registered_model  # as if the champion had been trained on another shop's lake:
    MlflowClient().set_model_version_tag(name, weak["version"], "pipeline.vocab_version", "2019-10-01")
    try:
        evaluation = evaluate(config, strong)
        assert "not_comparable" in evaluation["champion"] and "test" not in evaluation["champion"]
        decision = promote(config, strong)
        assert decision["promoted"] and "not in this lake" in decision["notes"][0]
    finally:
        MlflowClient().set_model_version_tag(name, weak["version"], "pipeline.vocab_version", DS)


def lake_config_with_vocab(tmp_path, features, item_ids):
    """A config whose lake holds, for DS, a vocabulary with ``item_ids`` in place of today's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.config import load_config

    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    config = load_config({"paths": paths})
    folder = lake.partition_path(config.layout.features, DS) / lake.ITEM_VOCAB
    folder.mkdir(parents=True)
    pq.write_table(features.vocab.set_column(features.vocab.schema.get_field_index("item_id"), "item_id",
                                             pa.array(item_ids, pa.string())), folder / "p.parquet")
    return config
