"""Sequence recommenders (Caser, GRU4Rec, SASRec) behind one contract and a name-to-class registry.

Keras (and TensorFlow under it, seconds to import) loads only when a model is needed: the first use
of a name below, or ``register_keras_classes()``, which registers every model class with Keras
serialisation so that ``keras.models.load_model`` (and ``mlflow.keras.load_model``) can rebuild a
saved recommender. ``pipelines.models.data`` and ``pipelines.models.metrics`` need no Keras, so the
tasks that only read metrics (the gate, the run report) start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.models.base import (
        MODEL_NAMES,
        SequenceRecommender,
        TrainingSpec,
        build_model,
        load_model,
        model_class,
    )

__all__ = ["MODEL_NAMES", "SequenceRecommender", "TrainingSpec", "build_model", "load_model", "model_class",
           "register_keras_classes"]


def register_keras_classes() -> None:
    """Import the three model modules, which registers their classes with Keras serialisation."""
    from pipelines.models import caser, gru4rec, sasrec  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in __all__:
        register_keras_classes()
        from pipelines.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'pipelines.models' has no attribute {name!r}")
