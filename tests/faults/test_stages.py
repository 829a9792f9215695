"""Every stage that writes, killed with SIGKILL part-way through its write, then rerun.

One small world (conf/test's demo: landed, validated, features, one trained candidate, a champion,
recommendations and a report) is built once, uninterrupted: the reference. Each test copies it, kills
a stage of the copy at a chosen write, checks that nothing half-written is visible, reruns the stage
and checks its outputs equal the reference's.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipelines import lake
from pipelines.config import REPO_ROOT
from pipelines.lake import PART_FILE, partition_path
from tests.faults.harness import KILLED, built_once, lake_config, lake_env, leftovers, run_stage

pytestmark = [pytest.mark.faults, pytest.mark.spark]
DS = "2026-11-27"
MODEL = "caser"
STAGES = {
    "validate": f"from pipelines.validation.raw_day import validate_raw_day\nvalidate_raw_day(config, {DS!r})",
    "check_features": (f"from pipelines.validation.features import validate_feature_partition\n"
                       f"validate_feature_partition(config, {DS!r})"),
    "train": f"from pipelines.training.candidates import train_candidate\ntrain_candidate(config, {DS!r}, {MODEL!r})",
    "evaluate": ("import json\nfrom pipelines.training.evaluation import evaluate_candidates\n"
                 f"evaluate_candidates(config, {DS!r}, [json.loads(config.layout.candidate_record({DS!r}, "
                 f"{MODEL!r}).read_text())])"),
    "promote": ("import json\nfrom pipelines.registry.gate import promote_and_record, promotion_control\n"
                f"promote_and_record(config, {DS!r}, json.loads(config.layout.evaluation_record({DS!r}).read_text()),"
                " promotion_control(who='faults', run_id='scheduled__fault-suite'))"),
    "score": f"from pipelines.scoring.recommendations import write_recommendations\nwrite_recommendations(config, {DS!r})",
    "report": f"from pipelines.reporting.report import write_run_report\nwrite_run_report(config, {DS!r})",
}


def _stage(root, name: str, fault: str | None = None) -> int:
    done = run_stage(root, STAGES[name], fault)
    assert done.returncode in (0, KILLED), done.stderr[-3000:]
    return done.returncode


def _features(root, fault: str | None = None) -> int:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "spark_jobs" / "build_features.py"), "--ds", DS],
                          cwd=REPO_ROOT, env=lake_env(root, fault), capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, KILLED), done.stderr[-3000:]
    return done.returncode


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The reference lake, every stage run once without a fault: built once for all xdist workers (the
    tests of this module are spread over them, one by one), and only read: each test copies it."""
    return built_once(tmp_path_factory, "world", _build_world)


def _build_world(root) -> None:
    from pipelines.local.runner import land_demo
    from pipelines.validation.raw_day import validate_raw_day

    config = lake_config(root)
    land_demo(config, DS)
    for day in sorted(lake.day_folders(config.layout.raw_events)):
        if day < DS:
            validate_raw_day(config, day)
    assert _stage(root, "validate") == 0 and _features(root) == 0
    for stage in ("check_features", "train", "evaluate", "promote", "score", "report"):
        assert _stage(root, stage) == 0, stage


def _copy(world, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(world, root, symlinks=True)
    return root


def _table(root, zone: str):
    layout = lake_config(root).layout
    return pq.read_table(partition_path(getattr(layout, zone), DS) / PART_FILE)


def _record(root, path_of) -> dict:
    text = path_of(lake_config(root).layout).read_text()
    return json.loads(text.replace(str(root), "<root>"))


@pytest.mark.parametrize("fault", ["partition-staged:1", "partition-staged:2", "text-staged:2"])
def test_validation_killed_mid_write_then_rerun(world, tmp_path, fault):
    root = _copy(world, tmp_path)
    layout = lake_config(root).layout
    for zone in (layout.validated_events, layout.quarantine):
        shutil.rmtree(partition_path(zone, DS))
    layout.check_record(DS, lake.RAW_EVENTS_CHECK).unlink()
    assert _stage(root, "validate", fault) == KILLED
    for zone in (layout.validated_events, layout.quarantine):  # absent, or whole
        folder = partition_path(zone, DS)
        assert not folder.exists() or (folder / PART_FILE).exists()
    assert _stage(root, "validate") == 0
    assert _table(root, "validated_events").equals(_table(world, "validated_events"))
    assert _table(root, "quarantine").equals(_table(world, "quarantine"))
    check = lambda layout: layout.check_record(DS, lake.RAW_EVENTS_CHECK)  # noqa: E731
    assert _record(root, check) == _record(world, check)
    assert leftovers(root / "lake_dir") == []


def test_the_feature_job_killed_before_its_swap_then_rerun(world, tmp_path, spark):
    from tests.features.frames import snapshot

    root = _copy(world, tmp_path)
    target = partition_path(lake_config(root).layout.features, DS)
    shutil.rmtree(target)
    assert _features(root, "partition-staged") == KILLED
    assert not target.exists() and leftovers(root / "lake_dir")  # nothing visible; the staging is left
    assert _features(root) == 0
    assert snapshot(spark, target) == snapshot(spark, partition_path(lake_config(world).layout.features, DS))
    assert leftovers(root / "lake_dir") == []


def test_training_killed_mid_epoch_then_rerun_registers_one_version(world, tmp_path):
    from mlflow import MlflowClient

    from pipelines.registry.store import configure_mlflow

    root = _copy(world, tmp_path)
    config = lake_config(root)
    config = config.model_copy(update={"training": config.training.model_copy(update={"seed": 43})})  # new run
    code = STAGES["train"].replace("train_candidate(config,", "train_candidate(config.model_copy(update="
                                   "{'training': config.training.model_copy(update={'seed': 43})}),")
    process = subprocess.Popen([sys.executable, "-c", "from pipelines.config import load_config\n"
                                "config = load_config()\n" + code], cwd=REPO_ROOT, env=lake_env(root),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    configure_mlflow(config)
    client, experiment = MlflowClient(), config.mlflow.experiment
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not client.search_runs(
            [client.get_experiment_by_name(experiment).experiment_id], "attributes.status = 'RUNNING'"):
        time.sleep(0.5)
    time.sleep(3)  # inside fit
    process.send_signal(signal.SIGKILL)
    assert process.wait() == KILLED
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    [crashed] = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    versions = len(client.search_model_versions(f"name = '{config.promotion.registered_model}'"))
    assert run_stage(root, code).returncode == 0
    assert client.get_run(crashed.info.run_id).info.status == "FAILED"  # not left "running" in the UI
    after = client.search_model_versions(f"name = '{config.promotion.registered_model}'")
    assert len(after) == versions + 1  # one new version for the attempt that finished
    record = json.loads(config.layout.candidate_record(DS, MODEL).read_text())
    assert record["version"] == str(max(after, key=lambda v: int(v.version)).version)


def test_training_killed_between_registering_and_recording_leaves_a_labelled_version_never_a_candidate(world,
                                                                                                      tmp_path):
    from mlflow import MlflowClient

    from pipelines.registry.store import configure_mlflow

    root = _copy(world, tmp_path)
    config = lake_config(root)
    code = STAGES["train"].replace("train_candidate(config,", "train_candidate(config.model_copy(update="
                                   "{'training': config.training.model_copy(update={'seed': 44})}),")
    configure_mlflow(config)
    client, name = MlflowClient(), config.promotion.registered_model
    before = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    assert run_stage(root, code, "candidate-registered").returncode == KILLED  # registered, its run not ended

    assert run_stage(root, code).returncode == 0
    new = [v for v in client.search_model_versions(f"name = '{name}'") if v.version not in before]
    orphan, kept = sorted(new, key=lambda v: int(v.version))
    assert orphan.tags["pipeline.gate"].startswith("crashed attempt")  # labelled, never evaluated
    assert client.get_run(orphan.run_id).info.status == "FAILED"
    assert json.loads(config.layout.candidate_record(DS, MODEL).read_text())["version"] == str(kept.version)
    assert kept.tags["pipeline.gate"] == "pending"


def _reset(root, stage: str) -> None:
    """Undo the stage's own outputs in the copy, so the killed attempt is the stage's first."""
    from mlflow import MlflowClient

    from pipelines.registry.store import configure_mlflow

    config = lake_config(root)
    layout = config.layout
    paths = {"train": [layout.candidate_record(DS, MODEL)], "evaluate": [layout.evaluation_record(DS)],
             "promote": [layout.decision_record(DS), layout.champion_history,
                         layout.champion_history.with_suffix(".latest.json")],
             "report": [layout.run_report(DS, "html"), layout.run_report(DS, "md")]}.get(stage, [])
    for path in paths:
        path.unlink()
    if stage == "score":
        for zone in (layout.recommendations, layout.audiences):
            shutil.rmtree(partition_path(zone, DS))
    if stage in ("promote", "evaluate"):  # the world evaluated and promoted before there was a champion
        configure_mlflow(config)
        client, name = MlflowClient(), config.promotion.registered_model
        for alias in (config.promotion.champion_alias, config.promotion.challenger_alias):
            if alias in client.get_registered_model(name).aliases:
                client.delete_registered_model_alias(name, alias)


OUTPUTS = {"train": [lambda lt: lt.candidate_record(DS, MODEL)], "evaluate": [lambda lt: lt.evaluation_record(DS)],
           "promote": [lambda lt: lt.decision_record(DS), lambda lt: lt.champion_history],
           "report": [lambda lt: lt.run_report(DS, "html"), lambda lt: lt.run_report(DS, "md")]}


def _comparable(text: str, root, suffix: str, world=None):
    """The file with its lake's path (and the world's, in records copied from it) and wall-clock fields out."""
    text = text.replace(str(root), "<root>").replace(str(world or root), "<root>")
    if suffix not in (".json", ".jsonl"):
        return text
    records = [json.loads(line) for line in text.splitlines()] if suffix == ".jsonl" else [json.loads(text)]
    for record in records:  # wall-clock fields: when it ran, how long it took
        record.pop("seconds", None), record.pop("at", None), (record.get("history_entry") or {}).pop("at", None)
    return records


@pytest.mark.parametrize(("stage", "fault"), [("train", "text-staged:1"), ("evaluate", "text-staged:1"),
                                              ("promote", "text-staged:1"), ("promote", "text-staged:3"),
                                              ("score", "partition-staged:1"), ("score", "partition-staged:2"),
                                              ("report", "text-staged:1"), ("report", "text-staged:2")])
def test_a_stage_killed_mid_write_is_completed_by_its_rerun(world, tmp_path, stage, fault):
    from mlflow import MlflowClient

    from pipelines.registry.store import configure_mlflow

    root = _copy(world, tmp_path)
    _reset(root, stage)
    layout = lake_config(root).layout
    assert _stage(root, stage, fault) == KILLED
    for path_of in OUTPUTS.get(stage, []):  # absent, or a whole file
        path = path_of(layout)
        assert not path.exists() or _comparable(path.read_text(), root, path.suffix)
    assert _stage(root, stage) == 0
    config = lake_config(root)
    configure_mlflow(config)
    versions = MlflowClient().search_model_versions(f"name = '{config.promotion.registered_model}'")
    assert len(versions) == 1  # no duplicate registration from the rerun
    for zone in ("recommendations", "audiences"):
        assert _table(root, zone).equals(_table(world, zone)), zone
    history = [json.loads(line) for line in layout.champion_history.read_text().splitlines()]
    assert [(e["action"], e["version"]) for e in history] == [("promote", str(versions[0].version))]  # once
    for path_of in OUTPUTS.get(stage, []):
        fresh, reference = path_of(layout), path_of(lake_config(world).layout)
        assert _comparable(fresh.read_text(), root, fresh.suffix, world) == \
            _comparable(reference.read_text(), world, reference.suffix), fresh.name
    assert leftovers(root / "lake_dir") == []
