"""
# privacy_erasure

Carries out customers' erasure and suppression requests (GDPR art. 17 and 21) everywhere the
pipeline keeps them, every day and whenever triggered:

1. **accept_requests**: takes in the request files dropped into `privacy/requests/` (`make erase
   CUSTOMER=... REASON='...'` writes one) and the run's `requests` param. A malformed line is refused
   with its file and line number; every accepted customer goes on the suppression list at once, so
   the nightly validation drops their new events from then on.
2. **erase_pending** (`lake_writes` pool, which the nightly writers share: one waits for the other):
   removes their rows from the raw zone (`erase`; `suppress` keeps it for a legal hold), the validated
   days, the features of every day, the outputs, the exports, the serving database (then `VACUUM
   FULL`), their values from Data Docs, logs and reports, and tags the model versions trained on them
   (rollback then refuses those). Each request ends `done` or `not_found` in `privacy/audit.jsonl`
   with the counts per store; a crash leaves it pending and the next run finishes it.
3. **apply_retention**: deletes raw and quarantined days older than `privacy.raw_retention_days`, and
   blanks the raw lines that suppressed people sent since.

A request given in the `requests` param is also kept in this run's conf in Airflow's metadata
database; prefer `make erase` (or a file drop) so that the id lives only in the pending request.
`make erasure-status` shows every request, open ones and any older than `privacy.deadline_hours`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from pipelines.config import load_config

CONFIG = load_config()


@dag(
    dag_id="privacy_erasure",
    schedule="@daily",
    start_date=dt.datetime.combine(CONFIG.airflow.start_date, dt.time(), tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["privacy", "gdpr"],
    default_args={"retries": CONFIG.airflow.retries,
                  "retry_delay": dt.timedelta(minutes=CONFIG.airflow.retry_delay_minutes),
                  "execution_timeout": CONFIG.airflow.execution_timeout("default")},
    params={"requests": Param([], type="array", items={
        "type": "object", "required": ["customer_id"],
        "properties": {"customer_id": {"type": "string", "minLength": 1},
                       "kind": {"type": "string", "enum": ["erase", "suppress"]},
                       "reason": {"type": "string"}}},
        description='Requests to take in with this run, e.g. [{"customer_id": "U000123", "kind": "erase", '
                    '"reason": "ticket 4411"}]; empty = only the dropped files')},
)
def privacy_erasure():
    @task
    def accept_requests(params: dict, dag_run=None) -> dict:
        from pipelines import tasks

        return tasks.accept_erasure_requests(params["requests"], getattr(dag_run, "triggering_user_name", None))

    @task(pool=CONFIG.privacy.lake_pool)
    def erase_pending() -> dict:
        from pipelines import tasks

        return tasks.erase_pending_requests()

    @task(pool=CONFIG.privacy.lake_pool)
    def apply_retention(ds=None) -> dict:
        from pipelines import tasks

        return tasks.apply_retention(ds)

    accept_requests() >> erase_pending() >> apply_retention()


privacy_erasure()
