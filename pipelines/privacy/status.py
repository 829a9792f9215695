"""The audit as people read it: every request's status, its counts, and which are overdue.

``make erasure-status`` prints it; the run report shows the open and overdue ones. A request is
overdue when it is still open (pending or failed) ``privacy.deadline_hours`` after it was made.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.privacy.requests import DONE, NOT_FOUND, REFUSED, audit_entries, latest_statuses

CLOSED = (DONE, NOT_FOUND)


def erasure_status(config: PipelineConfig, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every request's latest status with its age; open and overdue ones listed; refused lines counted."""
    now = now or dt.datetime.now(dt.UTC)
    deadline = dt.timedelta(hours=config.privacy.deadline_hours)
    requests = []
    for request_id, entry in sorted(latest_statuses(config.layout).items(),
                                    key=lambda item: item[1].get("requested_at", "")):
        requested = dt.datetime.fromisoformat(entry["requested_at"])
        closed_at = dt.datetime.fromisoformat(entry["at"]) if entry["status"] in CLOSED else None
        age = (closed_at or now) - requested
        requests.append({"request_id": request_id, "kind": entry.get("kind"), "status": entry["status"],
                         "requested_at": entry["requested_at"], "requested_by": entry.get("requested_by"),
                         "done_at": entry["at"] if closed_at else None, "hours": round(age.total_seconds() / 3600, 1),
                         "overdue": closed_at is None and age > deadline, "counts": entry.get("counts", {})})
    refused = [entry for entry in audit_entries(config.layout) if entry.get("status") == REFUSED]
    return {"deadline_hours": config.privacy.deadline_hours, "requests": requests,
            "open": [r["request_id"] for r in requests if r["status"] not in CLOSED],
            "overdue": [r["request_id"] for r in requests if r["overdue"]], "refused_lines": len(refused)}


def format_status(status: dict[str, Any]) -> str:
    """A table for the terminal (``make erasure-status``)."""
    lines = [f"{'request':<20} {'kind':<9} {'status':<10} {'requested (UTC)':<26} {'hours':>6}  removed per store"]
    for request in status["requests"]:
        counts = {k: v for k, v in request["counts"].items() if k != "identifiers"}
        removed = ", ".join(f"{store} {n}" for store, n in counts.items()) or "-"
        flag = "  OVERDUE" if request["overdue"] else ""
        lines.append(f"{request['request_id']:<20} {request['kind'] or '-':<9} {request['status']:<10} "
                     f"{request['requested_at']:<26} {request['hours']:>6}  {removed}{flag}")
    lines.append(f"{len(status['requests'])} requests, {len(status['open'])} open, {len(status['overdue'])} overdue "
                 f"(deadline {status['deadline_hours']} h), {status['refused_lines']} refused request lines")
    return "\n".join(lines)
