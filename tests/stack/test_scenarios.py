"""The pipeline as a deployment runs it: the scheduler, the UI's forms, backfills, reruns, a killed worker.

Driven through Airflow's REST API, its UI in Chromium (Playwright) and the stack's pid files, never
``dag.test()``, against the stack of ``conftest.py``: PostgreSQL, Redis, Celery workers on the
``default`` and ``gpu`` queues, the MLflow server and the Spark standalone cluster. The tests run in
file order and build on each other, as the days of a deployment do: the scheduler's night, a
backfill of earlier days from the UI's form, reruns, a run triggered from the form whose training
worker is killed, a bad day inside a backfill, and the champion in MLflow's UI. Screenshots go to
``var/screenshots/`` of the repository.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import time

import pyarrow.parquet as pq
import pytest

from pipelines import lake
from pipelines.config import REPO_ROOT
from tests.stack.conftest import DAG, LATEST, TODAY, days_before

pytestmark = pytest.mark.stack
RUN_TIMEOUT = 600
SHOTS = REPO_ROOT / "var" / "screenshots"  # kept after the run, for people to look at
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DAYS = tuple(days_before(LATEST, n) for n in (3, 2, 1))  # the days backfilled after the latest night ran


def outputs(config, ds):
    """The day's recommendations and audiences, in a stable order (the comparison of two runs)."""
    frames = []
    for root, keys in ((config.layout.recommendations, ["user_key", "rank"]),
                       (config.layout.audiences, ["campaign", "rank"])):
        frame = pq.read_table(lake.partition_path(root, ds)).to_pandas()
        frames.append(frame.sort_values(keys).reset_index(drop=True))
    return frames


def same_outputs(left, right) -> bool:
    return all(a.equals(b) for a, b in zip(left, right, strict=True))


def mlflow_state(stack, config):
    """(runs, model versions) in the stack's MLflow server."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    versions = client.search_model_versions(f"name='{config.promotion.registered_model}'")
    return sorted(r.info.run_id for r in runs), sorted(int(v.version) for v in versions)


def run_of(api, ds):
    found = [run for run in api.runs(DAG) if run["logical_date"].startswith(ds)]
    assert len(found) == 1, (ds, found)
    return found[0]


def wait_for_runs(api, days, timeout=RUN_TIMEOUT * 3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {run["logical_date"][:10]: run for run in api.runs(DAG)}
        if all(day in runs and runs[day]["state"] in ("success", "failed") for day in days):
            return runs
        time.sleep(5)
    raise AssertionError(f"runs of {days} not finished within {timeout}s: {api.runs(DAG)}")


def wait_for_new_run(api, known: set[str], finished: bool = True, timeout: float = RUN_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [run for run in api.runs(DAG) if run["dag_run_id"] not in known]
        if new and (not finished or new[0]["state"] in ("success", "failed")):
            return new[0]
        time.sleep(2)
    raise AssertionError(f"no new run within {timeout}s: {api.runs(DAG)}")


@pytest.fixture(scope="module")
def page(stack, landed):
    """One Chromium page (Debian's, driven by Playwright) for the steps a person takes in the UIs."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.set_default_timeout(30_000)
            log_in(tab, stack[0])  # with the password the api-server generated
            yield tab
        finally:
            browser.close()


def modal(page):
    """The open modal dialog (a date picker's popover is a dialog too, but not a modal one)."""
    return page.locator("[role=dialog][aria-modal=true]")


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def rest(page) -> None:
    """A blank page while the test waits on the scheduler: Airflow's UI polls and re-renders every few
    seconds, which kept a fifth of a core busy on these 2-core machines for the whole tier."""
    page.goto("about:blank")


def log_in(page, running) -> None:
    page.goto(f"{running.airflow_url}/auth/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", running.admin_password())
    shot(page, "01-login")
    page.click("button[type=submit]")
    page.wait_for_url(f"{running.airflow_url}/", timeout=30_000)


def no_staging_left(config) -> list[str]:
    return [str(path) for path in config.layout.lake_dir.rglob(".*") if path.name.startswith((".staging", ".retired"))]


@pytest.fixture(scope="module")
def landed(stack):
    """The demo's raw days ending at the day after the latest night, the earlier ones validated by hand."""
    from pipelines.local.runner import land_demo, validate_earlier_days

    _, _, config = stack
    land_demo(config, TODAY.isoformat())  # demo.days (6) days: the form's trigger of today has data too
    validate_earlier_days(config, DAYS[0])  # what the nights before the first one the stack runs did
    return config


def copy_reference_lake(config, root, known: set[str]) -> None:
    """The stack's raw days in ``known`` and the check records so far, into ``root/lake`` (nothing else:
    no features, outputs or registry)."""
    layout = config.layout
    for zone in ("raw", "checks"):
        shutil.copytree(layout.lake_dir / zone, root / "lake" / zone)
    for day, folder in lake.day_folders(root / "lake" / "raw" / "events").items():
        if day not in known:
            shutil.rmtree(folder)


def reference_nights(root, days: list[str]) -> dict[str, list]:
    """What nightly runs of ``days``, one after the other in date order, write from the lake under ``root``
    through ``airflow dags test`` (the path of make run), in a deployment of its own (SQLite metadata,
    local Spark, a SQLite MLflow store and champion history, its own serving database); by day.

    A night of D reads only its window ending at D and the vocabulary of the latest features before D,
    so the later raw days in the copy do not reach it.
    """
    import subprocess
    import sys

    from tests.conftest import free_port

    paths = {"var_dir": root, "lake_dir": root / "lake", "gx_dir": root / "gx", "mlflow_dir": root / "mlflow",
             "reports_dir": root / "reports"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIPELINE__PATHS__", "PIPELINE__MLFLOW",
                                                                  "PIPELINE_STACK", "SPARK_"))}
    env.update({f"PIPELINE__PATHS__{key.upper()}": str(path) for key, path in paths.items()})
    env["PIPELINE_SERVING_DB_PORT"] = str(free_port())
    try:
        for ds in days:  # each night stops its serving database at the end; the next starts it again
            done = subprocess.run([sys.executable, "-m", "pipelines", "run-imported", "--ds", ds], cwd=REPO_ROOT,
                                  env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, (ds, done.stdout[-3000:], done.stderr[-3000:])
    finally:  # its serving database was stopped; its data (outside tmp under root) go too
        subprocess.run([sys.executable, "-m", "pipelines.local.serving_db", "purge"], cwd=REPO_ROOT, env=env,
                       capture_output=True)
    from pipelines.config import load_config

    reference = load_config({"paths": {key: str(path) for key, path in paths.items()}})
    return {ds: outputs(reference, ds) for ds in days}


@pytest.fixture(scope="module")
def references(landed, tmp_path_factory):
    """The nightly runs the stack's outputs are compared with, started in the background as the module
    starts, beside the stack's own nights (most of a stack night's tasks keep one of two cores busy:
    a process starting, its imports, Python); one future per scenario, with its outputs by day.

    Each copies the lake as the stack's will be when it compares: the raw days the stack will have
    validated by then (the earlier days validated by hand, the latest night's, and for the backfill
    its own days; the landed day of the form's trigger is left out) and the check records.
    """
    from concurrent.futures import ThreadPoolExecutor

    config = landed
    by_hand = set(lake.day_folders(config.layout.validated_events))
    chains = {"scheduler": [LATEST], "backfill": list(DAYS)}
    pool = ThreadPoolExecutor(max_workers=1)  # one reference night at a time beside the stack's
    futures = {}
    for name, days in chains.items():
        root = tmp_path_factory.mktemp(f"reference-{name}")
        copy_reference_lake(config, root, by_hand | {LATEST, *days})
        futures[name] = pool.submit(reference_nights, root, days)
    try:
        yield futures
    finally:  # a module that stopped early does not wait for the nights nobody will compare with
        pool.shutdown(wait=True, cancel_futures=True)


def without_versions(frames) -> list:
    """The outputs without model_version: two registries number the same model differently."""
    return [frame.drop(columns=["model_version"]) for frame in frames]


def test_the_scheduler_runs_the_latest_night_on_its_own(stack, landed, references):
    running, api, config = stack
    assert api.runs(DAG) == []
    api.set_paused(DAG, False)  # nothing else: the scheduler creates the run for the latest interval
    deadline = time.monotonic() + 120
    while not api.runs(DAG) and time.monotonic() < deadline:
        time.sleep(2)
    night = run_of(api, LATEST)
    assert night["run_type"] == "scheduled"
    assert api.wait_for_run(DAG, night["dag_run_id"], RUN_TIMEOUT)["state"] == "success"
    instances = api.task_instances(DAG, night["dag_run_id"])
    training = [ti for ti in instances if ti["task_id"] == "train_candidate"]
    assert {ti["rendered_map_index"] for ti in training} == set(config.training.models)
    assert {ti["queue"] for ti in training} == {config.airflow.gpu_queue}  # on the GPU worker's queue
    assert {ti["state"] for ti in instances} == {"success"}
    recommendations, audiences = outputs(config, LATEST)
    assert len(recommendations) and len(audiences)
    # Row for row what dag.test() writes for the same data: epochs, not seconds, end the training.
    reference = references["scheduler"].result(timeout=RUN_TIMEOUT * 3)[LATEST]
    assert same_outputs(without_versions(outputs(config, LATEST)), without_versions(reference))


@pytest.mark.browser
def test_the_ui_logs_in_with_the_generated_password_and_shows_the_dag_doc(stack, page):
    running, api, config = stack
    page.goto(f"{running.airflow_url}/dags/{DAG}")
    page.get_by_test_id("markdown-button").click()
    doc = modal(page)
    doc.get_by_text("Turns one day of raw clickstream").wait_for()
    assert "promote_champion" in doc.inner_text()
    shot(page, "02-dag-doc")
    page.keyboard.press("Escape")


@pytest.mark.browser
def test_a_backfill_from_the_form_runs_earlier_days_in_order_as_their_nightly_runs_would(stack, page, references):
    from pipelines.registry.champion import read_history, version_as_of
    from pipelines.scoring.recommendations import POPULARITY_FALLBACK

    running, api, config = stack
    live_before = [e for e in read_history(config) if e.get("live", True)]
    latest_outputs = outputs(config, LATEST)
    page.goto(f"{running.airflow_url}/dags/{DAG}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = modal(page)
    dialog.get_by_text("Backfill", exact=True).click()
    for label, day in (("From", DAYS[0]), ("To", LATEST)):  # the latest night exists: "Missing Runs" runs 3
        dialog.get_by_text("Select date and time").first.click()
        # By its label: once From is filled, both date fields can be visible at once (a strict-mode clash)
        page.get_by_role("textbox", name=label, exact=True).fill(day.replace("-", "/"))
        page.locator("input[placeholder='HH:mm']:visible").last.fill("00:00")
        page.keyboard.press("Escape")  # closes the date picker, not the form
    dialog.get_by_text(f"{len(DAYS)} runs will be triggered.").wait_for()
    shot(page, "03-backfill-form")
    known = {run["dag_run_id"] for run in api.runs(DAG)}
    dialog.get_by_role("button", name="Run Backfill").click()
    wait_for_new_run(api, known, finished=False)  # the form's request is in before the page goes
    rest(page)
    runs = wait_for_runs(api, DAYS)
    assert [runs[day]["state"] for day in DAYS] == ["success"] * len(DAYS)
    assert {runs[day]["run_type"] for day in DAYS} == {"backfill"}
    for earlier, later in itertools.pairwise(DAYS):  # one at a time, in date order
        assert runs[earlier]["end_date"] <= runs[later]["start_date"], (earlier, later)
    assert same_outputs(outputs(config, LATEST), latest_outputs)  # the latest night is untouched
    history = read_history(config)
    live_champion = live_before[-1]["version"] if live_before else None
    for day in DAYS:
        evaluation = lake.read_record(config.layout.evaluation_record(day))
        if evaluation["champion"]:  # the bar: never a later night's champion, trained on this day's targets
            assert evaluation["champion"]["version"] not in {e["version"] for e in history if (e.get("ds") or "") > day}
        expected = version_as_of(history, day) or POPULARITY_FALLBACK  # the champion as of the day scored it
        assert set(outputs(config, day)[0]["model_version"]) == {expected}, day
    from mlflow import MlflowClient

    alias = MlflowClient(tracking_uri=running.mlflow_url).get_model_version_by_alias(
        config.promotion.registered_model, config.promotion.champion_alias)
    assert live_champion is None or str(alias.version) == live_champion  # the live alias is the latest night's
    # Each day's outputs, row for row, what nightly runs of those days in date order write.
    reference = references["backfill"].result(timeout=RUN_TIMEOUT * 3)
    for day in DAYS:
        assert same_outputs(without_versions(outputs(config, day)), without_versions(reference[day])), day
    # The same request through the API: nothing to run, nothing changes.
    before = mlflow_state(running, config), {day: outputs(config, day) for day in (*DAYS, LATEST)}
    api.call("POST", "backfills", {"dag_id": DAG, "from_date": f"{DAYS[0]}T00:00:00Z", "to_date": f"{LATEST}T00:00:00Z",
                                   "reprocess_behavior": "none", "run_backwards": False, "dag_run_conf": {},
                                   "max_active_runs": 1}, ok=(409, 422))
    time.sleep(10)
    assert len(api.runs(DAG)) == len(DAYS) + 1
    assert mlflow_state(running, config) == before[0]
    assert all(same_outputs(outputs(config, day), before[1][day]) for day in before[1])
    page.goto(f"{running.airflow_url}/dags/{DAG}/runs/{runs[DAYS[1]]['dag_run_id']}/tasks/train_candidate/mapped")
    for model in config.training.models:  # the grid names the mapped training tasks by model
        page.get_by_text(model, exact=True).first.wait_for()
    shot(page, "04-mapped-training")
    rest(page)


def test_clearing_score_users_or_the_whole_run_rewrites_the_same_outputs(stack, landed):
    running, api, config = stack
    for day, task_ids in ((LATEST, ["score_users"]), (DAYS[1], None)):
        run = run_of(api, day)
        before, state = outputs(config, day), mlflow_state(running, config)
        api.clear(DAG, run["dag_run_id"], task_ids)
        assert api.wait_for_run(DAG, run["dag_run_id"], RUN_TIMEOUT)["state"] == "success"
        assert same_outputs(outputs(config, day), before), day
        assert mlflow_state(running, config) == state, day  # no new MLflow run, no new model version


def training_run_started(running, config, day: str, timeout: float = RUN_TIMEOUT) -> str:
    """The id of the day's first MLflow training run, as soon as the server has it: its task is then inside
    the training (its model is registered only after all epochs, an evaluation and the model's upload)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=running.mlflow_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name(config.mlflow.experiment)
        started = experiment and client.search_runs(
            [experiment.experiment_id], f"tags.`pipeline.ds` = '{day}' and attributes.status = 'RUNNING'")
        if started:
            return started[0].info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no training run of {day} started within {timeout}s")


@pytest.mark.browser
def test_the_trigger_form_submits_with_its_defaults_and_the_run_survives_a_killed_worker(stack, page):
    from pipelines.local.stack import group_alive, running_pid, services, up

    running, api, config = stack
    known = {run["dag_run_id"] for run in api.runs(DAG)}
    page.goto(f"{running.airflow_url}/dags/{DAG}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = modal(page)
    dialog.get_by_text("promotion_reason").wait_for()
    shot(page, "05-trigger-form")
    submit = dialog.get_by_role("button", name="Trigger")
    assert submit.is_enabled()  # nothing to type: promotion_reason is optional
    submit.click()
    run = wait_for_new_run(api, known, finished=False)
    rest(page)
    assert run["run_type"] == "manual"
    training_run = training_run_started(running, config, run["logical_date"][:10])
    gpu_worker = next(s for s in services(running) if s.name == "airflow-worker-gpu")
    pid = running_pid(running, gpu_worker)
    os.killpg(pid, signal.SIGKILL)  # kill -9: the worker and the task it ran
    while group_alive(pid):  # gone (and reaped: this process started it), before a new one is started
        time.sleep(0.1)
    up(running)  # its supervisor (compose's restart policy) brings a worker back
    done = api.wait_for_run(DAG, run["dag_run_id"], RUN_TIMEOUT)
    assert done["state"] == "success", done
    training = [ti for ti in api.task_instances(DAG, run["dag_run_id"]) if ti["task_id"] == "train_candidate"]
    assert max(ti["try_number"] for ti in training) >= 2, training  # the killed task was retried
    from mlflow import MlflowClient

    day = run["logical_date"][:10]
    of_day = [v for v in MlflowClient(tracking_uri=running.mlflow_url).search_model_versions(
        f"name='{config.promotion.registered_model}'") if v.tags.get("pipeline.ds") == day]
    models = sorted(v.tags.get("pipeline.model") for v in of_day)
    assert models == sorted(config.training.models), models  # one version a model: none from the killed try
    killed = MlflowClient(tracking_uri=running.mlflow_url).get_run(training_run)
    assert killed.info.status == "FAILED" and "pipeline.crashed" in killed.data.tags, killed.info  # the retry closed it
    assert no_staging_left(config) == []
    page.goto(f"{running.airflow_url}/dags/{DAG}/runs/{run['dag_run_id']}")
    page.get_by_text("train_candidate").first.wait_for()
    shot(page, "06-triggered-run")
    rest(page)


def test_a_bad_day_inside_a_backfill_stops_at_validation_and_keeps_the_champion(stack, landed):
    running, api, config = stack
    from mlflow import MlflowClient

    bad = days_before(DAYS[0], 1)
    raw = lake.partition_path(config.layout.raw_events, bad)
    for part in raw.glob("*.jsonl"):
        lines = part.read_text().splitlines()
        part.write_text("\n".join(line if i % 3 else "{truncated" for i, line in enumerate(lines)) + "\n")
    client = MlflowClient(tracking_uri=running.mlflow_url)
    champion = client.get_model_version_by_alias(config.promotion.registered_model, config.promotion.champion_alias)
    api.backfill(DAG, bad, DAYS[0])  # DAYS[0] ran already: only the bad day runs
    run = wait_for_runs(api, (bad,))[bad]
    assert run["state"] == "failed"
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG, run["dag_run_id"])}
    assert states["validate_raw_events"] == "failed" and states["build_features"] == "upstream_failed"
    assert states["write_run_report"] == "success"
    log = api.call("GET", f"dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances/validate_raw_events/logs/1",
                   params={"full_content": True})
    text = str(log)
    assert "rows quarantined" in text and "above max_failure_rate" in text and "malformed_json" in text
    report = config.layout.run_report(bad, "md").read_text()
    assert "stopped at the raw_events data checks; champion unchanged" in report and "rows quarantined" in report
    after = client.get_model_version_by_alias(config.promotion.registered_model, config.promotion.champion_alias)
    assert after.version == champion.version


@pytest.mark.browser
def test_mlflow_shows_the_registered_model_with_its_champion_alias(stack, page):
    running, api, config = stack
    page.goto(f"{running.mlflow_url}/#/models/{config.promotion.registered_model}")
    page.get_by_text(re.compile(rf"@\s*{config.promotion.champion_alias}")).first.wait_for(timeout=60_000)
    shot(page, "07-mlflow-champion")
