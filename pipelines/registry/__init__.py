"""The MLflow side: the store, the champion alias and its history, lineage, and the promotion gate.

- ``store``: pointing MLflow at the configured store, finding a finished run by its tags;
- ``champion``: the champion alias, its history in the lake, loading a version, rollback;
- ``lineage``: what a model version was made from (tags, the ``mlflow.data`` dataset, the code);
- ``gate``: the ``promote_champion`` stage (data checks, the model loads, MLflow thresholds).
"""
