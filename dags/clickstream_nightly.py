"""
# clickstream_nightly

Turns one day of raw clickstream (`ds`, the run's logical date) into next-item recommendations:

1. **validate_raw_events**: Great Expectations checks on `raw/events/dt=<ds>`; bad rows go to
   `quarantine/events/dt=<ds>` with a reason; above the configured failure rate the run stops here.
2. **build_features**: `spark_jobs/build_features.py` through the `spark_default` connection, with
   the run's `overrides`: dedup, pseudonymise, sessions, per-user item sequences over the trailing
   window, stable vocabulary.
3. **validate_features**: Great Expectations checks on the features.
4. **train_candidate** (mapped, `gpu` pool and Celery queue): Caser, GRU4Rec and SASRec, each an MLflow run.
5. **evaluate_candidates**: HR@10 / NDCG@10 against all items, popularity and the champion alongside.
6. **promote_champion**: moves the `champion` alias only when the gate passes (or when the run's
   `promotion_mode` is `force`; `forbid` promotes nothing; both need `promotion_reason`, which is
   otherwise left empty). A backfill of an earlier date is judged against the champion as of that
   date; the live alias moves only for the latest date.
7. **score_users**: the champion's top-K per active user to `outputs/recommendations/dt=<ds>`, and each
   campaign's audience (the users likeliest to want its items) to `outputs/audiences/dt=<ds>`.
8. **publish**: the day's recommendations and audiences by customer id (anonymous visitors left out)
   into the serving PostgreSQL of the `postgres_serving` connection, in one transaction (a rerun
   replaces the day; a failure leaves the previous day serving), and as JSON Lines exports.
9. **write_run_report** (teardown: runs whatever happened, does not decide the run's state): the run
   report `reports/run-<ds>.html` (and `.md`, and in MLflow) with the checks, metrics, gate and plots.

Every task reads and writes only its `ds` partition, atomically, so reruns and backfills give the
same result. The tasks that write lake partitions share the `lake_writes` pool with `privacy_erasure`,
so an erasure never rewrites a day while this run writes it; new events of customers with an erasure
or suppression request are dropped at validation (`rows_suppressed`). Run params override the layered config (`conf/`); see README.md.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task, teardown

from pipelines.config import REPO_ROOT, load_config
from pipelines.tasks import FEATURE_JOB_ARGS

CONFIG = load_config()
# Downstream DAGs (campaign exports, dashboards) can be scheduled on these instead of on a clock.
FEATURES = Asset(name="clickstream_features", uri=CONFIG.layout.features.as_uri())
RECOMMENDATIONS = Asset(name="clickstream_recommendations", uri=CONFIG.layout.recommendations.as_uri())
AUDIENCES = Asset(name="campaign_audiences", uri=CONFIG.layout.audiences.as_uri())
PUBLISHED = Asset(name="serving_recommendations", uri=f"postgres://{CONFIG.publishing.conn_id}/{CONFIG.publishing.schema_name}")


@dag(
    dag_id=CONFIG.airflow.dag_id,
    # ds is the day processed: the run that fires at midnight covers the day that just ended.
    schedule=CronDataIntervalTimetable(CONFIG.airflow.schedule, timezone="UTC"),
    start_date=dt.datetime.combine(CONFIG.airflow.start_date, dt.time(), tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["clickstream", "recommendations", "nightly"],
    default_args={"retries": CONFIG.airflow.retries,
                  "retry_delay": dt.timedelta(minutes=CONFIG.airflow.retry_delay_minutes),
                  "execution_timeout": CONFIG.airflow.execution_timeout("default")},
    params={"overrides": Param({}, type="object",
                               description="Config overrides for this run, e.g. {\"training\": {\"epochs\": 5}}"),
            "promotion_mode": Param("auto", enum=["auto", "force", "forbid"],
                                    description="auto: the gate decides; force / forbid: a person does (give a reason)"),
            # Optional (null) so that the trigger and backfill forms submit with their defaults; the
            # promotion task fails with a clear error when force / forbid comes without a reason.
            "promotion_reason": Param(None, type=["null", "string"],
                                      description="Why promotion is forced or forbidden (needed for those two only)")},
)
def clickstream_nightly():
    # The tasks that rewrite lake partitions share the lake_writes pool with privacy_erasure.
    lake_pool = CONFIG.privacy.lake_pool

    @task(pool=lake_pool)
    def validate_raw_events(ds: str, params: dict) -> dict:
        from pipelines import tasks

        with tasks.no_retry_on_bad_data():
            return tasks.validate_raw_events(ds, params["overrides"])

    build_features = SparkSubmitOperator(
        task_id="build_features",
        conn_id=CONFIG.spark.conn_id,
        application=str(REPO_ROOT / "spark_jobs" / "build_features.py"),
        application_args=FEATURE_JOB_ARGS,  # --ds and the run's overrides, templated: the job loads the config
        driver_memory=CONFIG.spark.driver_memory,
        execution_timeout=CONFIG.airflow.execution_timeout("build_features"),
        conf={"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false", **CONFIG.spark.jvm_conf()},
        name="build_features_{{ ds_nodash }}",
        outlets=[FEATURES],
        pool=lake_pool,
    )

    @task
    def validate_features(ds: str, params: dict) -> dict:
        from pipelines import tasks

        with tasks.no_retry_on_bad_data():
            return tasks.validate_features(ds, params["overrides"])

    @task(pool=CONFIG.airflow.gpu_pool, queue=CONFIG.airflow.gpu_queue, map_index_template="{{ model_name }}",
          execution_timeout=CONFIG.airflow.execution_timeout("train_candidate"))
    def train_candidate(model_name: str, ds: str, params: dict) -> dict:
        from pipelines import tasks

        return tasks.train_candidate(ds, model_name, params["overrides"])

    @task
    def evaluate_candidates(candidates: list[dict], ds: str, params: dict) -> dict:
        from pipelines import tasks

        return tasks.evaluate_candidates(ds, list(candidates), params["overrides"])

    @task
    def promote_champion(evaluation: dict, ds: str, params: dict, dag_run=None) -> dict:
        from pipelines import tasks

        control = {"mode": params["promotion_mode"], "reason": params["promotion_reason"],
                   "who": getattr(dag_run, "triggering_user_name", None), "run_id": getattr(dag_run, "run_id", None)}
        return tasks.promote_champion(ds, evaluation, params["overrides"], control)

    @task(outlets=[RECOMMENDATIONS, AUDIENCES], pool=lake_pool)
    def score_users(decision: dict, ds: str, params: dict) -> dict:
        from pipelines import tasks

        return tasks.score_users(ds, params["overrides"])

    @task(outlets=[PUBLISHED], pool=lake_pool)
    def publish(scored: dict, ds: str, params: dict) -> dict:
        from pipelines import tasks

        return tasks.publish_outputs(ds, params["overrides"])

    @teardown
    def write_run_report(ds: str, params: dict, dag_run=None) -> dict:
        from pipelines import tasks

        return tasks.write_run_report(ds, params["overrides"], getattr(dag_run, "start_date", None))

    raw_checks = validate_raw_events()
    feature_checks = validate_features()
    raw_checks >> build_features >> feature_checks
    candidates = train_candidate.partial().expand(model_name=CONFIG.training.models)
    feature_checks >> candidates
    publish(score_users(promote_champion(evaluate_candidates(candidates)))) >> write_run_report()


clickstream_nightly()
