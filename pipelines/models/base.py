"""The contract every sequence recommender fulfils, and the name-to-class registry.

A recommender is a ``keras.Model`` built from ``(num_items, params)``. At inference it takes
``{"items": int32[B, L], "user": int32[B]}`` (items left-padded with 0, ids 1..num_items, most recent
last; user is a bucket id) and returns ``float32[B, num_items + 1]`` scores for the next item, column
0 being padding that callers mask. For training it exposes ``training_spec()`` (what batches the data
pipeline must produce) and ``training_loss(batch)``. Model code uses only ``keras.ops``,
``keras.layers`` and ``keras.random``, so it runs under any Keras backend.

A new model is one new file (a subclass of ``SequenceRecommender``) plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, ClassVar

import keras
from keras import ops

# name -> "module:Class"; imported lazily so that importing the registry loads no model code.
_REGISTRY: dict[str, str] = {
    "caser": "pipelines.models.caser:Caser",
    "gru4rec": "pipelines.models.gru4rec:GRU4Rec",
    "sasrec": "pipelines.models.sasrec:SASRec",
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """What training batches a model needs; ``pipelines.models.data`` produces them.

    view: "sequence" -> {"items": [B, length], "user": [B], "positives": [B, length] (next item at
        each position, 0 = no target), "negatives": [B, length, n] or [B, n]};
        "window" -> {"items": [B, length] (the last `length` items), "user": [B],
        "positives": [B, targets] (the next `targets` items), "negatives": [B, n]}.
    negatives_per: "position" (a set of n per position) or "sequence" (n per row, shared by the
        row's positions; for the "window" view always "sequence").
    negative_sampling: "uniform" over 1..num_items or "popularity" (training counts ** alpha).
    """

    view: str
    length: int
    num_negatives: int
    negatives_per: str = "position"
    negative_sampling: str = "uniform"
    popularity_alpha: float = 1.0
    targets: int = 1


def resolve_params(model_name: str, defaults: dict[str, Any], params: dict[str, Any] | None) -> dict:
    """Defaults overlaid with ``params``; an unknown key is a ValueError naming the allowed keys."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{model_name}: unknown parameter {unknown[0]!r}; allowed keys are {sorted(defaults)}. "
            f"Fix the model params in the config (conf/base) or the run's params."
        )
    return {**defaults, **params}


def check_choice(model_name: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Fail loudly when a categorical parameter has a value the model does not implement."""
    if value not in allowed:
        raise ValueError(f"{model_name}: parameter {key}={value!r} is not one of {list(allowed)}.")


def fit_length(items, length: int):
    """Keep the last ``length`` columns of int[B, L], left-padding with 0 when L < length."""
    current = items.shape[1]
    if current >= length:
        return items[:, current - length :]
    return ops.pad(items, [[0, 0], [length - current, 0]])


class SequenceRecommender(keras.Model):
    """Base class: holds ``num_items`` and resolved ``params``; subclasses add layers and logic."""

    DEFAULT_PARAMS: ClassVar[dict[str, Any]] = {}

    def __init__(self, num_items: int, params: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(num_items) < 1:
            raise ValueError(f"{type(self).__name__}: num_items must be >= 1, got {num_items}.")
        self.num_items = int(num_items)
        self.params = resolve_params(type(self).__name__, self.DEFAULT_PARAMS, params)

    @property
    def input_length(self) -> int:
        """How many trailing items the model looks at."""
        return int(self.params["max_len"])

    @property
    def num_user_buckets(self) -> int | None:
        """How many user buckets the model embeds; None when it ignores the user."""
        return None

    def training_spec(self) -> TrainingSpec:
        raise NotImplementedError

    def training_loss(self, batch: dict, training: bool = True):
        """Scalar loss of one batch shaped as ``training_spec()`` describes."""
        raise NotImplementedError

    def build(self, input_shape=None):
        # Run one dummy forward pass so every sub-layer creates its weights, whatever the backend.
        dummy = {
            "items": ops.zeros((1, self.input_length), dtype="int32"),
            "user": ops.zeros((1,), dtype="int32"),
        }
        self.call(dummy, training=False)

    def get_build_config(self) -> dict:
        return {"input_shape": None}

    def build_from_config(self, config: dict) -> None:
        if not self.built:
            self.build()

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_items": self.num_items,
            "params": dict(self.params),
        }

    @classmethod
    def from_config(cls, config: dict) -> SequenceRecommender:
        return cls(**config)


def model_class(name: str) -> type[SequenceRecommender]:
    """The class registered under ``name``; unknown names fail with the allowed names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; allowed models are {list(MODEL_NAMES)}.")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, num_items: int, params: dict[str, Any] | None = None) -> SequenceRecommender:
    """Build (and create the weights of) the model registered under ``name``."""
    model = model_class(name)(num_items=num_items, params=params)
    model.build()
    return model


def load_model(path: str | Path) -> SequenceRecommender:
    """Load a model saved with ``model.save("x.keras")``, registering every model class first."""
    for name in MODEL_NAMES:
        model_class(name)
    return keras.saving.load_model(str(path))
