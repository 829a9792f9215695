"""Feature engineering for the sequence recommenders (called by ``spark_jobs/build_features.py``).

- ``cleaning``: which events count (late events, replays, duplicates, bots), as pure steps;
- ``transforms``: privacy, sessions, sequences (and their fixed-width padded copy);
- ``vocab``: the stable item vocabulary and item popularity;
- ``aggregates``: popularity over 1/7/30 days, RFM and favourite categories, campaign CTR;
- ``clean_events``: the incremental part, each landed day's clean events computed once and reused;
- ``window_outputs``: the tables a night writes from the window's clean events;
- ``partitions``: which day folders a run reads (plain Python, no Spark).

Nothing here creates a Spark session; the job's ``main()`` does.
"""
