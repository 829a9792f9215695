"""Training a day's candidates and evaluating them (the ML code itself is ``pipelines.models``).

- ``splits``: the day's features as leave-one-out splits;
- ``candidates``: the ``train_candidate`` stage (one MLflow run and registered version per model);
- ``evaluation``: the ``evaluate_candidates`` stage (candidates, popularity and the champion, one split).
"""
