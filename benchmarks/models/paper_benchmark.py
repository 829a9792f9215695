"""The public benchmark the models are checked against: the SASRec paper's Amazon data and settings.

Shared by ``benchmarks.models.reproduce`` (accuracy against the published figures) and
``benchmarks.models.bench_models`` (epoch time). Imports no TensorFlow and no MLflow, so the GPU benchmark
runs under ``KERAS_BACKEND=jax`` on a host that has neither.

The data file has one ``user item`` pair per line, ids from 1, each user's lines in time order
(the format of kang205/SASRec's ``data/*.txt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATASET = "../shared/datasets/amazon-games/sequences.txt"
MAX_LEN = 50  # positions kept per user, as in the SASRec paper for the Amazon data

# SASRec paper (Kang & McAuley 2018), Table III, Amazon Games: (HR@10, NDCG@10) under its protocol.
PUBLISHED: dict[str, tuple[float, float]] = {
    "popularity": (0.4724, 0.2779),
    "gru4rec": (0.6599, 0.4759),  # GRU4Rec+ (Hidasi & Karatzoglou 2018)
    "caser": (0.5282, 0.3214),
    "sasrec": (0.7410, 0.5360),
}

# The published rows of each dataset, as far as they are known here: (HR@10, NDCG@10) under the SASRec
# paper's protocol. Games has every row of the paper's Table III; for the others only SASRec's own row
# is given (Table III); a dataset or model not listed has no published figure, and its paper column
# stays blank rather than showing another dataset's.
PUBLISHED_BY_DATASET: dict[str, dict[str, tuple[float, float]]] = {
    "amazon-games": PUBLISHED,
    "amazon-beauty": {"sasrec": (0.4854, 0.3219)},
    "ml-1m": {"sasrec": (0.8245, 0.5905)},
}
DATASET_ALIASES = {"games": "amazon-games", "beauty": "amazon-beauty", "movielens-1m": "ml-1m", "ml1m": "ml-1m"}


def published_for(dataset: str, model: str) -> tuple[float, float] | None:
    """The published (HR@10, NDCG@10) of ``model`` on ``dataset`` (a ``dataset_name``), or None when unknown."""
    key = dataset.lower()
    return PUBLISHED_BY_DATASET.get(DATASET_ALIASES.get(key, key), {}).get(model)


# Each model's paper settings: model params and (batch size, learning rate) of Adam.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "sasrec": {  # the SASRec paper's settings for the Amazon data
        "params": {"hidden_units": 50, "num_blocks": 2, "num_heads": 1, "max_len": MAX_LEN, "dropout": 0.5,
                   "loss": "bce", "num_negatives": 1, "attention": "fused"},
        "batch_size": 128, "learning_rate": 1e-3,
    },
    "caser": {  # Tang & Wang 2018 defaults: d=50, L=5, T=3, n_v=4, n_h=16, dropout 0.5, 3 negatives
        "params": {"embedding_dim": 50, "window": 5, "targets": 3, "num_vertical": 4, "num_horizontal": 16,
                   "dropout": 0.5, "num_negatives": 3},
        "batch_size": 512, "learning_rate": 1e-3,
    },
    "gru4rec": {  # GRU4Rec+: one GRU layer of 100 units, BPR-max over sampled negatives
        "params": {"embedding_dim": 100, "hidden_units": 100, "max_len": MAX_LEN, "loss": "bpr_max",
                   "bpr_max_reg": 1.0, "num_negatives": 128, "negative_sampling": "uniform",
                   "dropout_embedding": 0.25, "dropout_hidden": 0.25},
        "batch_size": 128, "learning_rate": 1e-3,
    },
}
MODEL_ORDER = ("popularity", "sasrec", "gru4rec", "caser")


def read_sequence_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(items int64[total], offsets int64[users + 1], num_items) of a ``user item`` per line file.

    Rows are grouped by user (stable, so each user's time order is kept) without a per-user loop.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sequence file not found; pass --dataset (or DATASET=...) pointing "
                                "at a 'user item' per line file such as the SASRec paper's data/Video.txt")
    pairs = np.array(path.read_bytes().split(), dtype=np.int64)
    if pairs.size % 2 or pairs.size == 0:
        raise ValueError(f"{path}: expected two integers per line ('user item'), got {pairs.size} numbers")
    pairs = pairs.reshape(-1, 2)
    if pairs.min() < 1:
        raise ValueError(f"{path}: user and item ids must start at 1; found {int(pairs.min())}")
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    _, counts = np.unique(pairs[:, 0], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return pairs[:, 1], offsets, int(pairs[:, 1].max())


def dataset_name(path: str | Path) -> str:
    """``amazon-games`` for ``.../amazon-games/sequences.txt``; the file stem otherwise."""
    path = Path(path)
    return path.parent.name if path.stem == "sequences" and path.parent.name else path.stem


def benchmark_splits(path: str | Path, max_len: int = MAX_LEN):
    """Leave-one-out splits of the file; each user is their own bucket (Caser embeds users)."""
    from pipelines.models.data import build_splits

    items, offsets, num_items = read_sequence_file(path)
    users = np.arange(len(offsets) - 1, dtype=np.int32)
    return build_splits((items, offsets), users, num_items, max_len)


def paper_params(name: str, splits) -> dict[str, Any]:
    """The paper's model params; Caser gets one user embedding per user id (short users included)."""
    if name not in PAPER_SETTINGS:
        raise ValueError(f"no paper settings for {name!r}; known models are {sorted(PAPER_SETTINGS)}")
    params = dict(PAPER_SETTINGS[name]["params"])
    if name == "caser":
        params["num_user_buckets"] = int(splits.users.max()) + 1 if len(splits.users) else 1
    return params


def parse_models(value: str) -> list[str]:
    """``"sasrec,caser"`` -> names in MODEL_ORDER order; unknown names fail with the allowed ones."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODEL_ORDER))
    if unknown or not names:
        raise ValueError(f"--models {value!r}: unknown {unknown}; choose from {list(MODEL_ORDER)}")
    return [name for name in MODEL_ORDER if name in names]


def parse_budgets(value: str | None, names: list[str]) -> dict[str, float | None]:
    """``"900"`` (every model) or ``"sasrec=1200,caser=600"`` -> seconds per model (None = no limit)."""
    if value is None or value == "":
        return dict.fromkeys(names)
    if "=" not in value:
        return dict.fromkeys(names, float(value))
    budgets: dict[str, float | None] = dict.fromkeys(names)
    for part in value.split(","):
        name, _, seconds = part.partition("=")
        if name.strip() not in MODEL_ORDER:
            raise ValueError(f"--time-budget-seconds {value!r}: unknown model {name!r}; use {list(MODEL_ORDER)}")
        budgets[name.strip()] = float(seconds)
    return budgets
