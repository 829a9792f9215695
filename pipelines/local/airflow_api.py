"""A small client of Airflow 3's public REST API (``/api/v2``), as a deployment is driven from outside.

What the stack tier, the browser tier and ``make stack-*`` need: a token from ``/auth/token``,
unpausing, triggering, backfills, clearing and reading runs and task instances. Every call raises
``AirflowApiError`` with the method, the path, the status and Airflow's own message.
"""

from __future__ import annotations

import time
from typing import Any

import requests

FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """Airflow answered an API call with an error status."""


class AirflowApi:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url, self._username, self._password, self._timeout = url.rstrip("/"), username, password, timeout
        self._session = requests.Session()
        self._token: str | None = None

    def _login(self) -> None:
        answer = self._session.post(f"{self.url}/auth/token", json={"username": self._username,
                                                                     "password": self._password},
                                    timeout=self._timeout)
        if answer.status_code >= 300:
            raise AirflowApiError(f"POST /auth/token as {self._username}: {answer.status_code} {answer.text[:300]}")
        self._token = answer.json()["access_token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None, ok: tuple[int, ...] = ()) -> Any:
        """``method`` ``/api/v2/<path>``; the JSON answer (None when empty). Statuses in ``ok`` are no error."""
        if self._token is None:
            self._login()
        for attempt in (1, 2):
            answer = self._session.request(method, f"{self.url}/api/v2/{path.lstrip('/')}", json=body, params=params,
                                           headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout)
            if answer.status_code == 401 and attempt == 1:  # the token expired: log in again once
                self._login()
                continue
            break
        if answer.status_code >= 300 and answer.status_code not in ok:
            raise AirflowApiError(f"{method} /api/v2/{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    # --- DAGs and runs ---------------------------------------------------------------------------
    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, logical_date: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("POST", f"dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}})

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        answer = self.call("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})
        return answer["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]

    def backfill(self, dag_id: str, first: str, last: str, reprocess: str = "none",
                 conf: dict[str, Any] | None = None, max_active_runs: int = 1) -> dict[str, Any]:
        """``POST /backfills`` for the logical dates ``first``..``last`` (days, inclusive), oldest first."""
        return self.call("POST", "backfills", {"dag_id": dag_id, "from_date": f"{first}T00:00:00Z",
                                               "to_date": f"{last}T00:00:00Z", "run_backwards": False,
                                               "dag_run_conf": conf or {}, "reprocess_behavior": reprocess,
                                               "max_active_runs": max_active_runs})

    def clear(self, dag_id: str, run_id: str, task_ids: list[str] | None = None) -> Any:
        """Clear a run's task instances (all, or ``task_ids``): the scheduler runs them again."""
        if task_ids is None:
            return self.call("POST", f"dags/{dag_id}/dagRuns/{run_id}/clear", {"dry_run": False})
        return self.call("POST", f"dags/{dag_id}/clearTaskInstances",
                         {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False,
                          "reset_dag_runs": True, "include_downstream": False})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 3.0) -> dict[str, Any]:
        """The run once it has finished (success or failed); raise if it has not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)
