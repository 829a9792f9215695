"""Feature engineering for the sequence recommenders (called by ``spark_jobs/build_features.py``).

- ``transforms``: pure ``DataFrame -> DataFrame`` steps (privacy, dedup, sessions, sequences).
- ``vocab``: the stable item vocabulary and item popularity.
- ``partitions``: which day folders a run reads (plain Python, no Spark).

Nothing here creates a Spark session; the job's ``main()`` does.
"""
