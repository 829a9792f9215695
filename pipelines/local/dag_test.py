"""``airflow dags test`` that records the run's true start date (a workaround for apache/airflow#66127).

Airflow's ``DAG.test()`` creates its run with ``start_date`` set to the logical date, so a run for
yesterday started today shows a duration of a day and more in the UI and in ``dags list-runs``. This
entry point is ``airflow dags test`` itself, with the run created at the wall-clock time it starts
(the fix proposed upstream in apache/airflow#68837); the end date is Airflow's own. Drop it once a
released Airflow carries the fix.

    python -m pipelines.local.dag_test <dag_id> <logical date>
"""

from __future__ import annotations

import sys


def _start_now() -> None:
    import airflow.models.dagrun as dagrun
    from airflow.utils import timezone

    create = dagrun.get_or_create_dagrun
    if getattr(create, "starts_now", False):
        return

    def get_or_create_dagrun(**kwargs):
        return create(**{**kwargs, "start_date": timezone.utcnow()})

    get_or_create_dagrun.starts_now = True
    dagrun.get_or_create_dagrun = get_or_create_dagrun


def main(argv: list[str] | None = None) -> None:
    from airflow.__main__ import main as airflow_main

    _start_now()
    sys.argv = ["airflow", "dags", "test", *(sys.argv[1:] if argv is None else argv)]
    airflow_main()


if __name__ == "__main__":
    main()
