"""Per-task progress of a local DAG run, read through Airflow's public CLI (never its ORM)."""

from __future__ import annotations

import datetime as dt
import io
import os

from pipelines.local.airflow_run import Progress, StatesPoller, TaskState, _task_state, task_states

T = dt.datetime(2026, 11, 28, 0, 5, tzinfo=dt.UTC)


def test_progress_prints_each_start_and_end_once():
    out = io.StringIO()
    progress = Progress(out, started=0.0)
    running = TaskState("build_features", "running", T, None)
    progress.update([running, TaskState("validate_features", "", None, None)])
    progress.update([running])  # nothing new: nothing printed
    progress.update([TaskState("build_features", "success", T, T + dt.timedelta(seconds=35.2))])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[-2:] == ["build_features", "running"]
    assert lines[1].split()[-4:] == ["build_features", "success", "35.2", "s"]


def test_instances_of_an_earlier_run_read_as_not_started():
    row = {"task_id": "train_candidate", "map_index": "2", "state": "success",
           "start_date": (T - dt.timedelta(hours=1)).isoformat(), "end_date": T.isoformat()}
    assert _task_state(row, since=T) == TaskState("train_candidate[2]", "", None, None)
    fresh = _task_state({**row, "start_date": T.isoformat(), "end_date": (T + dt.timedelta(seconds=4)).isoformat()},
                        since=T)
    assert (fresh.task, fresh.state, fresh.seconds) == ("train_candidate[2]", "success", 4.0)


def test_the_cli_answers_no_states_for_a_run_that_does_not_exist():
    assert task_states("clickstream_nightly", "1999-01-01", dict(os.environ)) == []


def test_one_poller_answers_command_after_command_also_after_a_failed_one():
    import airflow

    with StatesPoller(dict(os.environ)) as poller:
        assert task_states("clickstream_nightly", "1999-01-01", {}, poller=poller) == []  # DagRunNotFound inside
        assert poller.printed("version").strip().splitlines()[-1] == airflow.__version__
        assert task_states("clickstream_nightly", "1999-01-02", {}, poller=poller) == []
        assert poller.printed("version").strip().splitlines()[-1] == airflow.__version__
    assert poller.printed("version") == ""  # closed: no answer, no hang


def test_cli_json_skips_the_warnings_airflow_prints_before_it():
    from pipelines.local.airflow_run import cli_json

    stdout = ('2026-12-01T11:12:05Z [warning  ] Could not import graphviz.\nYou might need [this]\n'
              '[{"dag_id": "clickstream_nightly", "state": "success"}]\n')
    assert cli_json(stdout) == [{"dag_id": "clickstream_nightly", "state": "success"}]
    assert cli_json("[warning  ] nothing else\n") is None
