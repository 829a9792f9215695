"""The suppression list: people whose data the pipeline must not take in again (erasure and suppression requests).

Written by the ``privacy`` stage when it accepts a request; read by validation (a suppressed person's
new events are dropped at ingest, counted as ``suppressed``), by the demo's collector and by
publishing. It holds no id: each entry is a keyed digest (HMAC-SHA256 under the pseudonymisation key
of ``features.hash_key_env``, in its own domain, so it is neither the raw id nor the features'
``user_key``) of a user id or an email, with the request it came from::

    {"digest": "5f0c...", "request_id": "e-20261201-3f9a2c", "since": "2026-12-01T09:14:03+00:00"}

Entries are never removed: a person who asked to be erased stays suppressed, so a re-landed export
or a late event cannot bring them back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any

from pipelines import columns as C
from pipelines import filesystem as fs

_DOMAIN = b"suppression\x00"
_ID_FIELDS = re.compile(rf'"(?:{C.USER_ID}|{C.EMAIL})"\s*:\s*"([^"\\]*)"')


class SuppressionKeyError(RuntimeError):
    """Suppressed people exist but the key that recognises them is not in the environment."""


def suppression_digest(value: str, key: bytes) -> str:
    """The suppression list's digest of a user id or an email (emails compared in lower case)."""
    text = value.strip().lower() if "@" in value else value
    return hmac.new(key, _DOMAIN + text.encode("utf-8"), hashlib.sha256).hexdigest()


def ids_in_line(text: str | None) -> list[str]:
    """The user id and email a raw event line carries: its fields, or, for a line that is not a JSON
    object (truncated, garbled), what looks like them in its text."""
    try:
        record = json.loads(text or "")
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        return _ID_FIELDS.findall(text or "")
    return [value for value in (record.get(C.USER_ID), record.get(C.EMAIL)) if isinstance(value, str)]


def read_suppressed(path: Path) -> set[str]:
    """The digests of the list at ``path`` (``LakeLayout.suppression_list``); empty when there is none."""
    return {entry["digest"] for entry in fs.read_json_lines(path)}


def append_suppressed(path: Path, entries: list[dict[str, Any]]) -> int:
    """Add entries whose digest is not listed yet (idempotent); returns how many were added."""
    known = read_suppressed(path)
    new = [entry for entry in entries if entry["digest"] not in known]
    new = list({entry["digest"]: entry for entry in new}.values())
    if new:
        fs.append_text(path, "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in new))
    return len(new)


class Suppressions:
    """Recognise suppressed user ids and emails; the key is only needed when the list is not empty."""

    def __init__(self, path: Path, key_env: str, env: dict[str, str] | None = None):
        self.digests = read_suppressed(path)
        self._key = b""
        if self.digests:
            value = (os.environ if env is None else env).get(key_env, "")
            if not value:
                raise SuppressionKeyError(
                    f"{path} lists {len(self.digests)} suppressed people but the environment variable {key_env} "
                    "(features.hash_key_env) is not set, so they cannot be recognised; give this task the same "
                    "secret as build_features")
            self._key = value.encode("utf-8")

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __contains__(self, value: object) -> bool:
        return bool(self.digests) and isinstance(value, str) and bool(value) and \
            suppression_digest(value, self._key) in self.digests
