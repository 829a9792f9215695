"""Running the pipeline on one machine, with the embedded services (where it runs, not what it does).

- ``environment``: Airflow home and SQLite metadata under ``var/``, ``spark_default`` as ``local[*]``,
  the per-machine HMAC key, the Java check; values already in the environment win;
- ``airflow_run``: ``airflow dags test`` of the nightly DAG with per-task progress from Airflow's CLI;
- ``runner``: ``make run`` and ``make run-imported`` (one runner, one rule for validated days);
- ``spark_cluster``: ``make spark-cluster``, a standalone master and worker on 127.0.0.1;
- ``stack``: ``make stack-up``, the production services as local processes;
- ``worker_preload``: the libraries each of the stack's Celery workers imports once, before it forks tasks.
"""
