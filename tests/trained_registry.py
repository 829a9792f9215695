"""A tiny trained registry for the gate, rollback and scoring tests: real SQLite MLflow, real Keras models.

``write_features`` writes a small feature partition by hand (users walk the catalogue: item i is
followed by item i+1); the session fixtures in ``tests/conftest.py`` train two GRU4Rec candidates on
it through the pipeline's own ``train_candidate``: one for a single epoch, one for many.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import columns as C
from pipelines import lake
from pipelines.config import load_config
from pipelines.io import write_json_atomic
from pipelines.lake import partition_path

DS = "2026-11-27"

N_ITEMS, N_USERS = 40, 240


def write_features(root, ds: str, n_items: int = N_ITEMS) -> None:
    """The walk over items 1..N_ITEMS; ``n_items`` > N_ITEMS adds items no user has touched yet (a later day)."""
    rng = np.random.default_rng(0)
    seqs = [[(start + j) % N_ITEMS + 1 for j in range(int(rng.integers(6, 12)))]
            for start in rng.integers(0, N_ITEMS, N_USERS)]
    folder = partition_path(root, ds)
    (folder / lake.SEQUENCES).mkdir(parents=True)
    (folder / lake.ITEM_VOCAB).mkdir()
    pq.write_table(pa.table({
        C.USER_KEY: [f"{u:064x}" for u in range(N_USERS)], C.USER_BUCKET: list(range(N_USERS)),
        C.ITEM_SEQ: pa.array(seqs, pa.list_(pa.int32())),
        C.PURCHASED_ITEMS: pa.array([[] for _ in seqs], pa.list_(pa.int32()))}), folder / lake.SEQUENCES / "p.parquet")
    pq.write_table(pa.table({C.ITEM_ID: [f"i{i}" for i in range(1, n_items + 1)],
                             C.ITEM_IDX: pa.array(range(1, n_items + 1), pa.int32()),
                             C.CATEGORY: ["c"] * n_items, C.FIRST_SEEN_DT: [ds] * n_items}),
                   folder / lake.ITEM_VOCAB / "p.parquet")
    (folder / lake.CAMPAIGN_ITEMS).mkdir()
    pq.write_table(pa.table({C.CAMPAIGN: ["walk-5-7"] * 3 + ["walk-20"],
                             C.ITEM_IDX: pa.array([5, 6, 7, 20], pa.int32()), C.N_EVENTS: [1, 1, 1, 1]}),
                   folder / lake.CAMPAIGN_ITEMS / "p.parquet")
    write_json_atomic(folder / lake.FEATURE_STATS, {"ds": ds, "vocab_version": ds, "window_start": ds, "window_end": ds})


def gate_config(tmp, **training):
    paths = {"var_dir": str(tmp), "lake_dir": str(tmp / "lake"), "gx_dir": str(tmp / "gx"),
             "mlflow_dir": str(tmp / "mlflow"), "reports_dir": str(tmp / "reports")}
    return load_config({"paths": paths, "training": {
        "models": ["gru4rec"], "learning_rate": 0.01, "patience": 50, "batch_size": 32, "time_budget_seconds": 120,
        "model_params": {"gru4rec": {"embedding_dim": 16, "hidden_units": 16, "num_negatives": 16,
                                     "dropout_embedding": 0.0, "dropout_hidden": 0.0}}, **training}})


def evaluate(config, candidate):
    from pipelines.training.evaluation import evaluate_candidates

    return evaluate_candidates(config, DS, [candidate])


def promote(config, candidate, **control):
    from pipelines.registry.gate import promote_champion, promotion_control

    return promote_champion(config, DS, evaluate(config, candidate), promotion_control(**control))


def champion_version(config):
    from pipelines.registry.champion import current_champion

    champion = current_champion(config)
    return str(champion.version) if champion else None


def version_tags(config, version):
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(config.promotion.registered_model, version).tags


def challenger_version(config):
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(config.promotion.registered_model,
                                                         config.promotion.challenger_alias).version)


def artifact_dir(version):
    from mlflow.artifacts import download_artifacts

    return download_artifacts(f"models:/{version.name}/{version.version}")
