"""Publishing: the day's recommendations and audiences where marketers' tools read them.

- ``connection``: the serving database's address (an Airflow connection) and a checked connect;
- ``customers``: the activation boundary, mapping pseudonymous ``user_key`` back to customer ids;
- ``store``: the serving tables in PostgreSQL and the one transaction that publishes a day;
- ``exports``: the same day as Amazon Personalize-style JSON Lines files;
- ``publish``: the stage function of the ``publish`` task.
"""
