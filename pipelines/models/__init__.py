"""Sequence recommenders (Caser, GRU4Rec, SASRec) behind one contract and a name-to-class registry.

Importing this package registers every model class with Keras serialisation, so
``keras.models.load_model`` (and ``mlflow.keras.load_model``) can rebuild a saved recommender.
"""

from pipelines.models import caser, gru4rec, sasrec  # noqa: F401 - registers the Keras classes
from pipelines.models.base import (
    MODEL_NAMES,
    SequenceRecommender,
    TrainingSpec,
    build_model,
    load_model,
    model_class,
)

__all__ = ["MODEL_NAMES", "SequenceRecommender", "TrainingSpec", "build_model", "load_model", "model_class"]
