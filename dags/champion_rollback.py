"""
# champion_rollback

Moves the `champion` alias of the recommender back to the previous approved version (or to
`to_version`, which must once have been champion), after checking that its model loads. The move is
kept in the champion history (`registry/champion_history.jsonl`) with who triggered it and `reason`.
Scoring reads the alias, so the next `score_users` uses the restored champion. The same as
`make rollback REASON='...' [TO_VERSION=N]`. A version trained on data that held a customer erased
since (tag `pipeline.erased_training_data`) is refused unless `allow_erased_training_data` is set.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from pipelines.config import load_config

CONFIG = load_config()


@dag(
    dag_id="champion_rollback",
    schedule=None,
    start_date=dt.datetime.combine(CONFIG.airflow.start_date, dt.time(), tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["clickstream", "recommendations", "manual"],
    default_args={"retries": CONFIG.airflow.retries,
                  "retry_delay": dt.timedelta(minutes=CONFIG.airflow.retry_delay_minutes),
                  "execution_timeout": CONFIG.airflow.execution_timeout("default")},
    params={"reason": Param(type="string", minLength=3, description="Why the champion is rolled back (kept)"),
            "to_version": Param(None, type=["null", "integer"],
                                description="Version to restore; empty = the previous approved one"),
            "allow_erased_training_data": Param(False, type="boolean",
                                                description="Restore a version trained on data of customers "
                                                            "erased since (refused otherwise); say why in reason")},
)
def champion_rollback():
    @task
    def rollback_champion(params: dict, dag_run=None) -> dict:
        from pipelines import tasks

        # A retry of this task finds its own entry by run_id and does not roll back twice.
        return tasks.rollback_champion(params["reason"], getattr(dag_run, "triggering_user_name", None),
                                       params["to_version"], getattr(dag_run, "run_id", None),
                                       allow_erased_training_data=params["allow_erased_training_data"])

    rollback_champion()


champion_rollback()
