"""The ``score_users`` stage: the champion's top-K items per active user (``recommendations``) and each
campaign's audience (``audiences``), from one pass of the model over the users."""
