"""The promotion gate, the champion history and rollback on a real SQLite MLflow with tiny Keras models.

One module fixture writes a small feature partition by hand (users walk the catalogue: item i is
followed by item i+1) and trains two GRU4Rec candidates through the pipeline's own ``train_candidate``:
one for a single epoch, one for many. Each test then sets the registry's aliases and history itself.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines.config import load_config
from pipelines.io import partition_path, write_json_atomic

DS = "2026-11-27"
N_ITEMS, N_USERS = 40, 240


def _write_features(root, ds: str) -> None:
    rng = np.random.default_rng(0)
    seqs = [[(start + j) % N_ITEMS + 1 for j in range(int(rng.integers(6, 12)))]
            for start in rng.integers(0, N_ITEMS, N_USERS)]
    folder = partition_path(root, ds)
    (folder / "sequences").mkdir(parents=True)
    (folder / "item_vocab").mkdir()
    pq.write_table(pa.table({
        C.USER_KEY: [f"{u:064x}" for u in range(N_USERS)], C.USER_BUCKET: list(range(N_USERS)),
        C.ITEM_SEQ: pa.array(seqs, pa.list_(pa.int32())),
        C.PURCHASED_ITEMS: pa.array([[] for _ in seqs], pa.list_(pa.int32()))}), folder / "sequences" / "p.parquet")
    pq.write_table(pa.table({C.ITEM_ID: [f"i{i}" for i in range(1, N_ITEMS + 1)],
                             C.ITEM_IDX: pa.array(range(1, N_ITEMS + 1), pa.int32()),
                             C.CATEGORY: ["c"] * N_ITEMS, C.FIRST_SEEN_DT: [ds] * N_ITEMS}),
                   folder / "item_vocab" / "p.parquet")
    (folder / "campaign_items").mkdir()
    pq.write_table(pa.table({C.CAMPAIGN: ["walk-5-7"] * 3 + ["walk-20"],
                             C.ITEM_IDX: pa.array([5, 6, 7, 20], pa.int32()), C.N_EVENTS: [1, 1, 1, 1]}),
                   folder / "campaign_items" / "p.parquet")
    write_json_atomic(folder / "_stats.json", {"ds": ds, "vocab_version": ds, "window_start": ds, "window_end": ds})


def _config(tmp, **training):
    paths = {"var_dir": str(tmp), "lake_dir": str(tmp / "lake"), "gx_dir": str(tmp / "gx"),
             "mlflow_dir": str(tmp / "mlflow"), "reports_dir": str(tmp / "reports")}
    return load_config({"paths": paths, "training": {
        "models": ["gru4rec"], "learning_rate": 0.01, "patience": 50, "batch_size": 32, "time_budget_seconds": 120,
        "model_params": {"gru4rec": {"embedding_dim": 16, "hidden_units": 16, "num_negatives": 16,
                                     "dropout_embedding": 0.0, "dropout_hidden": 0.0}}, **training}})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from pipelines.candidates import train_candidate

    tmp = tmp_path_factory.mktemp("gate")
    weak_config, strong_config = _config(tmp, epochs=1), _config(tmp, epochs=12)
    _write_features(weak_config.layout.features, DS)
    for check in ("raw_events", "features"):
        write_json_atomic(partition_path(weak_config.layout.checks, DS) / f"{check}.json", {"success": True})
    weak = train_candidate(weak_config, DS, "gru4rec")
    strong = train_candidate(strong_config, DS, "gru4rec")
    return strong_config, weak, strong


@pytest.fixture
def fresh(registry):
    """No champion, no history: each test starts from an empty registry state (versions stay)."""
    from mlflow import MlflowClient

    from pipelines.tracking import configure_mlflow

    config, weak, strong = registry
    configure_mlflow(config)  # a test may have pointed MLflow elsewhere
    client = MlflowClient()
    aliases = client.get_registered_model(config.promotion.registered_model).aliases
    for alias in (config.promotion.champion_alias, config.promotion.challenger_alias):
        if alias in aliases:
            client.delete_registered_model_alias(config.promotion.registered_model, alias)
    config.layout.champion_history.unlink(missing_ok=True)
    return registry


def _evaluate(config, candidate):
    from pipelines.candidates import evaluate_candidates

    return evaluate_candidates(config, DS, [candidate])


def _promote(config, candidate, **control):
    from pipelines.promotion import promote_champion, promotion_control

    return promote_champion(config, DS, _evaluate(config, candidate), promotion_control(**control))


def _champion(config):
    from pipelines.promotion import current_champion

    champion = current_champion(config)
    return str(champion.version) if champion else None


def _version_tags(config, version):
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(config.promotion.registered_model, version).tags


def test_candidates_are_registered_with_their_lineage(registry):
    config, weak, strong = registry
    tags = _version_tags(config, strong["version"])
    for key in ("pipeline.data_interval", "pipeline.dataset_digest", "pipeline.feature_version",
                "pipeline.vocab_version", "pipeline.code_version", "pipeline.data_digest"):
        assert tags.get(key), key
    assert tags["pipeline.data_interval"].startswith(f"{DS}T00:00:00+00:00/")
    assert weak["version"] != strong["version"]


def test_one_epoch_challenger_is_not_promoted_and_says_why(fresh):
    config, weak, strong = fresh
    assert _promote(config, strong)["promoted"]
    decision = _promote(config, weak)
    assert not decision["promoted"] and _champion(config) == strong["version"]
    assert any(f"champion v{strong['version']}" in reason for reason in decision["reasons"])
    tags = _version_tags(config, weak["version"])
    assert tags["pipeline.gate"].startswith("rejected") and json.loads(tags["pipeline.gate.reasons"])
    assert _challenger(config) == weak["version"]


def _challenger(config):
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(config.promotion.registered_model,
                                                         config.promotion.challenger_alias).version)


def test_better_challenger_is_promoted_and_history_records_both_moves(fresh):
    from pipelines.registry import read_history

    config, weak, strong = fresh
    forced = _promote(config, weak, mode="force", reason="bootstrap the registry", who="ada")
    assert forced["promoted"] and forced["verdict"].startswith("forced")
    decision = _promote(config, strong)
    assert decision["promoted"] and _champion(config) == strong["version"]
    history = read_history(config)
    assert [(e["action"], e["version"], e["previous_version"]) for e in history] == [
        ("force", weak["version"], None), ("promote", strong["version"], weak["version"])]
    assert history[0]["who"] == "ada" and history[0]["reason"] == "bootstrap the registry"
    assert not _promote(config, strong)["promoted"]  # a rerun: already champion, no new history entry
    assert len(read_history(config)) == 2


def test_forbidden_run_promotes_nothing_and_a_reason_is_required(fresh):
    from pipelines.promotion import PromotionControlError, promotion_control

    config, weak, strong = fresh
    decision = _promote(config, strong, mode="forbid", reason="campaign freeze", who="bob")
    assert not decision["promoted"] and _champion(config) is None and "campaign freeze" in decision["verdict"]
    with pytest.raises(PromotionControlError, match="promotion_reason"):
        promotion_control("force", "")


def test_rollback_restores_the_previous_champion_and_scoring_uses_it(fresh):
    from pipelines.registry import RegistryError, read_history, rollback_champion
    from pipelines.scoring import write_recommendations

    config, weak, strong = fresh
    _promote(config, weak, mode="force", reason="bootstrap", who="ada")
    _promote(config, strong)
    entry = rollback_champion(config, "complaints about stale items", "carol", run_id="manual__1")
    assert entry["rolled_back"] and _champion(config) == weak["version"]
    assert rollback_champion(config, "retry", "carol", run_id="manual__1")["rolled_back"] is False  # idempotent
    assert [e["action"] for e in read_history(config)] == ["force", "promote", "rollback"]
    assert write_recommendations(config, DS)["model_version"] == weak["version"]
    with pytest.raises(RegistryError, match="no previous approved version"):
        rollback_champion(config, "again", "carol")


def test_without_a_champion_scoring_writes_labelled_popularity_or_fails_as_configured(fresh):
    from pipelines.scoring import POPULARITY_FALLBACK, NoChampionError, write_recommendations

    config, weak, strong = fresh
    summary = write_recommendations(config, DS)
    assert summary["fallback"] and summary["model_version"] == POPULARITY_FALLBACK
    assert summary["audiences"]["rows"] == 0  # popularity ranks every user alike: no audiences
    recs = pq.read_table(summary["path"])
    assert set(recs.column(C.MODEL_VERSION).to_pylist()) == {POPULARITY_FALLBACK}
    counts = np.bincount(pq.read_table(partition_path(config.layout.features, DS) / "sequences")
                         .column(C.ITEM_SEQ).combine_chunks().values.to_numpy(), minlength=N_ITEMS + 1)
    firsts = recs.filter(pc.equal(recs.column(C.RANK), 1)).column(C.ITEM_IDX).to_numpy()
    assert (counts[firsts] == counts[1:].max()).all()  # everyone's first pick is a most popular item
    failing = config.model_copy(update={"scoring": config.scoring.model_copy(update={"without_champion": "fail"})})
    with pytest.raises(NoChampionError, match="without_champion: popularity"):
        write_recommendations(failing, DS)
    _promote(config, weak, mode="force", reason="bootstrap", who="ada")
    assert write_recommendations(config, DS)["model_version"] == weak["version"]


def test_campaign_audiences_are_the_users_the_champion_expects_next_on_the_campaign_items(fresh):
    from pipelines.scoring import AFFINITY, write_recommendations

    config, weak, strong = fresh
    _promote(config, strong)
    config = config.model_copy(update={"scoring": config.scoring.model_copy(update={"audience_size": 8})})
    summary = write_recommendations(config, DS)
    assert summary["audiences"]["campaigns"] == 2 and summary["audiences"]["rows"] == 16
    audiences = pq.read_table(summary["audiences"]["path"]).to_pylist()
    sequences = pq.read_table(partition_path(config.layout.features, DS) / "sequences").to_pylist()
    last_item = {row[C.USER_KEY]: row[C.ITEM_SEQ][-1] for row in sequences}
    walk = [row for row in audiences if row[C.CAMPAIGN] == "walk-5-7"]
    assert [row[C.RANK] for row in walk] == list(range(1, 9))
    assert [row[AFFINITY] for row in walk] == sorted((row[AFFINITY] for row in walk), reverse=True)
    # users walk the catalogue (item i, then i + 1): those who stopped at 4, 5 or 6 go next to 5, 6 or 7
    hits = sum(last_item[row[C.USER_KEY]] in (4, 5, 6) for row in walk)
    assert hits >= 6, [last_item[row[C.USER_KEY]] for row in walk]
    assert {row[C.MODEL_VERSION] for row in audiences} == {strong["version"]}
    assert pq.read_table(summary["audiences"]["path"]).equals(
        pq.read_table(write_recommendations(config, DS)["audiences"]["path"]))  # a rerun writes the same


def test_store_that_cannot_be_reached_keeps_the_champion(fresh, monkeypatch):
    from pipelines.promotion import promote_champion

    config, weak, strong = fresh
    evaluation = _evaluate(config, strong)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = config.model_copy(update={"mlflow": config.mlflow.model_copy(
        update={"tracking_uri": "http://127.0.0.1:9"})})
    decision = promote_champion(unreachable, DS, evaluation)
    assert not decision["promoted"] and "cannot be reached" in decision["verdict"]


def test_missing_evidence_fails_closed(fresh):
    from mlflow import MlflowClient

    config, weak, strong = fresh
    _promote(config, weak, mode="force", reason="bootstrap", who="ada")
    missing = dict(strong, version="999")  # a registry entry that does not exist
    decision = _promote(config, missing, mode="force", reason="try it anyway")
    assert not decision["promoted"] and "not in the registry" in decision["verdict"]
    corrupt = dict(strong, run_id="0" * 32)  # the entry belongs to another run
    assert "corrupt entry" in _promote(config, corrupt)["verdict"]
    # A champion whose artifact is gone: registered from a copy that is then deleted.
    client, name = MlflowClient(), config.promotion.registered_model
    source = client.get_model_version(name, weak["version"])
    copy = config.layout.var_dir / "gone-model"
    shutil.copytree(_artifact_dir(source), copy)
    broken = client.create_model_version(name, copy.as_uri(), run_id=source.run_id)
    client.set_registered_model_alias(name, config.promotion.champion_alias, broken.version)
    shutil.rmtree(copy)
    decision = _promote(config, strong)
    assert not decision["promoted"] and _champion(config) == str(broken.version)
    assert "could not be re-scored" in decision["verdict"]
    (partition_path(config.layout.checks, DS) / "features.json").rename(config.layout.var_dir / "features.json")
    try:
        assert "no features data-check record" in _promote(config, strong, mode="force", reason="x")["verdict"]
    finally:
        (config.layout.var_dir / "features.json").rename(partition_path(config.layout.checks, DS) / "features.json")


def _artifact_dir(version):
    from mlflow.artifacts import download_artifacts

    return download_artifacts(f"models:/{version.name}/{version.version}")
