"""Erasure and suppression requests: taken in as data, kept pending until done, audited by request id.

A request is one JSON object (``make erase`` writes one file per request into ``privacy/requests/``;
a CRM or help-desk export may drop a JSON Lines file of many)::

    {"customer_id": "U000123", "kind": "erase", "requested_at": "2026-12-01T09:14:03+00:00",
     "requested_by": "dpo@shop.example", "reason": "GDPR art. 17 request #4411"}

``kind`` is ``erase`` (delete everything) or ``suppress`` (stop processing, keep the raw zone for a legal
hold). Intake (``accept_requests``) checks every line: a malformed one is refused with its file and
line number (recorded in the audit, never its content), the others become pending requests
(``privacy/pending/<request_id>.json``, the only place the customer id is kept) and their ids go on the
suppression list at once. The dropped file is then removed. ``finish_request`` records the outcome
and removes the pending file: after that, nothing of the request names the person.

The audit (``privacy/audit.jsonl``, append-only) has one entry per change of a request's status
(``pending``, ``done``, ``not_found``, ``failed``, ``refused``) with the counts removed per store; it
holds the request id, the kind, who asked and when, and the suppression digest of the customer id
(whoever knows the id and the key can check it was honoured), never the id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import filesystem as fs
from pipelines.config import PipelineConfig
from pipelines.io import write_json_atomic, write_text_atomic
from pipelines.lake import LakeLayout
from pipelines.suppression import append_suppressed, suppression_digest

ERASE, SUPPRESS = "erase", "suppress"
KINDS = (ERASE, SUPPRESS)
PENDING, DONE, NOT_FOUND, FAILED, REFUSED = "pending", "done", "not_found", "failed", "refused"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestError(ValueError):
    """A request that cannot be taken in; the message names the field and what to do."""


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    customer_id: str
    kind: str
    requested_at: str  # ISO-8601 with offset
    requested_by: str
    reason: str

    def audit_fields(self) -> dict[str, str]:
        """What the audit keeps of the request: everything but the customer id."""
        fields = asdict(self)
        fields.pop("customer_id")
        return fields


def parse_request(payload: Any, max_id_length: int, request_id: str, now: dt.datetime) -> ErasureRequest:
    """One request from its JSON object; ``RequestError`` names the field that is wrong."""
    if not isinstance(payload, dict):
        raise RequestError("not a JSON object; write one object per line: {\"customer_id\": ..., \"kind\": ...}")
    customer_id = payload.get("customer_id")
    if not isinstance(customer_id, str | int) or isinstance(customer_id, bool) or not str(customer_id).strip():
        raise RequestError("customer_id is missing or not a string; give the shop's customer (user) id")
    customer_id = str(customer_id).strip()
    if len(customer_id) > max_id_length or _CONTROL.search(customer_id):
        raise RequestError(f"customer_id is longer than {max_id_length} characters or holds control characters "
                           "(validation.max_id_length); no event can carry such an id")
    kind = payload.get("kind", ERASE)
    if kind not in KINDS:
        raise RequestError(f"kind {kind!r} is not one of {list(KINDS)}")
    requested_at = payload.get("requested_at") or now.isoformat(timespec="seconds")
    try:
        when = dt.datetime.fromisoformat(str(requested_at))
    except ValueError:
        raise RequestError(f"requested_at {requested_at!r} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise RequestError(f"requested_at {requested_at!r} has no UTC offset; write e.g. 2026-12-01T09:14:03+00:00")
    return ErasureRequest(request_id=str(payload.get("request_id") or request_id), customer_id=customer_id,
                          kind=kind, requested_at=when.astimezone(dt.UTC).isoformat(timespec="seconds"),
                          requested_by=str(payload.get("requested_by") or "unknown")[:200],
                          reason=str(payload.get("reason") or "")[:500])


def new_request_id(now: dt.datetime, seed: str | None = None) -> str:
    """``e-YYYYMMDD-xxxxxxxx``: random, or derived from ``seed`` (a dropped line: a re-read gives the same id)."""
    tail = hashlib.sha256(seed.encode()).hexdigest()[:8] if seed else uuid.uuid4().hex[:8]
    return f"e-{now:%Y%m%d}-{tail}"


def submit_request(config: PipelineConfig, customer_id: str, kind: str, requested_by: str, reason: str,
                   now: dt.datetime | None = None) -> ErasureRequest:
    """Drop one request into ``privacy/requests/`` (``make erase``); the next intake takes it in."""
    now = now or dt.datetime.now(dt.UTC)
    request = parse_request({"customer_id": customer_id, "kind": kind, "requested_by": requested_by,
                             "reason": reason, "requested_at": now.isoformat(timespec="seconds")},
                            config.validation.max_id_length, new_request_id(now), now)
    path = config.layout.privacy_requests / f"{request.request_id}.jsonl"
    write_text_atomic(path, json.dumps(asdict(request), sort_keys=True) + "\n")
    return request


def accept_requests(config: PipelineConfig, extra: list[dict[str, Any]] | None = None,
                    now: dt.datetime | None = None) -> dict[str, Any]:
    """Take in the dropped files (and ``extra`` requests, the DAG's param); see the module doc."""
    now = now or dt.datetime.now(dt.UTC)
    layout = config.layout
    key = _key(config)
    accepted, refused = [], []
    sources = [(path, fs.read_text(path, errors="replace").splitlines())
               for path in fs.list_dir(layout.privacy_requests, suffix=".jsonl", hidden=True)]
    sources.append((None, [json.dumps(payload) for payload in extra or []]))
    for path, lines in sources:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name if path else 'run param'} line {number}"
            try:
                request = parse_request(json.loads(line), config.validation.max_id_length,
                                        new_request_id(now, f"{where}:{line}"), now)
            except (ValueError, RecursionError) as err:
                refused.append({"status": REFUSED, "source": where, "error": str(err)[:300],
                                "at": now.isoformat(timespec="seconds")})
                continue
            _take_in(layout, request, key, now)
            accepted.append(request.request_id)
    for entry in refused:
        append_audit(layout, entry)
    for path, _ in sources:
        if path is not None:
            path.unlink()
    return {"accepted": len(accepted), "refused": len(refused), "request_ids": accepted,
            "refused_lines": [entry["source"] + ": " + entry["error"] for entry in refused]}


def _take_in(layout: LakeLayout, request: ErasureRequest, key: bytes, now: dt.datetime) -> None:
    pending = layout.privacy_pending / f"{request.request_id}.json"
    if fs.exists(pending) or request.request_id in latest_statuses(layout):
        return  # taken in already (intake killed before it removed the file)
    digest = suppression_digest(request.customer_id, key)
    append_suppressed(layout.suppression_list, [{"digest": digest, "request_id": request.request_id,
                                                 "since": now.isoformat(timespec="seconds")}])
    write_json_atomic(pending, asdict(request))
    append_audit(layout, {**request.audit_fields(), "status": PENDING, "subject_digest": digest,
                          "at": now.isoformat(timespec="seconds")})


def pending_requests(layout: LakeLayout) -> list[ErasureRequest]:
    """The requests taken in and not done yet, oldest first."""
    requests = [ErasureRequest(**fs.read_json(path))
                for path in fs.list_dir(layout.privacy_pending, suffix=".json", hidden=True)]
    return sorted(requests, key=lambda request: (request.requested_at, request.request_id))


def finish_request(layout: LakeLayout, request: ErasureRequest, status: str, counts: dict[str, int],
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """Record the outcome and remove the pending file (the last place the customer id was kept)."""
    now = now or dt.datetime.now(dt.UTC)
    entry = {**request.audit_fields(), "status": status, "counts": counts, "at": now.isoformat(timespec="seconds")}
    append_audit(layout, entry)
    fs.remove(layout.privacy_pending / f"{request.request_id}.json")
    return entry


def append_audit(layout: LakeLayout, entry: dict[str, Any]) -> None:
    fs.append_text(layout.privacy_audit, json.dumps(entry, sort_keys=True, default=str) + "\n")


def audit_entries(layout: LakeLayout) -> list[dict[str, Any]]:
    return fs.read_json_lines(layout.privacy_audit)


def latest_statuses(layout: LakeLayout) -> dict[str, dict[str, Any]]:
    """Each request's latest audit entry, merged over its earlier ones (so the first fields stay)."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in audit_entries(layout):
        if "request_id" in entry:
            latest[entry["request_id"]] = {**latest.get(entry["request_id"], {}), **entry}
    return latest


def _key(config: PipelineConfig) -> bytes:
    from pipelines.publishing.customers import hash_key

    return hash_key(config)
