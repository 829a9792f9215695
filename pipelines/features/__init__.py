"""The ``build_features`` stage: Spark feature engineering for the sequence recommenders.

- ``job``: the nightly job's orchestration (``run(spark, plan, key)``), called by ``spark_jobs/build_features.py``;
- ``cleaning``: which events count (late events, replays, duplicates, bots), as pure steps;
- ``transforms``: privacy, sessions, sequences (and their fixed-width padded copy);
- ``vocab``: the stable item vocabulary and item popularity;
- ``aggregates``: popularity over 1/7/30 days, RFM and favourite categories, campaign CTR;
- ``clean_events``: the incremental part, each landed day's clean events computed once and reused;
- ``window_outputs``: the tables a night writes from the window's clean events;
- ``store``: reading a day's features back (pyarrow, no Spark) for training, scoring and the checks.

Nothing here creates a Spark session; the job script's ``main()`` does. Folder names are ``pipelines.lake``'s.
"""
