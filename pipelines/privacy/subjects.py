"""Who a customer id is in the lake, and which days hold them: the erasure's user index.

A person is more than their customer id: the anonymous cookie ids they browsed under before logging
in (the anonymous ids, ``publishing.anonymous_user_ids``, seen in one of their sessions), the emails
and IP addresses their events carried, and the ``user_key`` of each id in the features and outputs.
Rows are matched by id or email; IP addresses are shared (offices, mobile carriers), so they are
only blanked in text, never used to pick rows.

The index is the raw zone's own columns: one projected read of ``user_id``, ``session_id``, ``email``
and ``ip_address`` per validated and quarantined day (a few MB for a 14-day lake) says which days hold
which person, so only those days' raw partitions are rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.privacy.requests import ErasureRequest
from pipelines.publishing.customers import user_key_of

_INDEX_COLUMNS = (C.USER_ID, C.SESSION_ID, C.EMAIL, C.IP_ADDRESS)
_MAX_PASSES = 3


@dataclass(eq=False)  # compared and hashed by identity: one per request
class Subject:
    """One request's person: every identifier found for them, and the raw days that hold them."""

    request: ErasureRequest
    user_ids: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    ip_addresses: set[str] = field(default_factory=set)
    user_keys: set[str] = field(default_factory=set)
    days: set[str] = field(default_factory=set)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def identifiers(self) -> dict[str, set[str]]:
        return {"user_id": self.user_ids, "email": self.emails, "ip_address": self.ip_addresses,
                "user_key": self.user_keys}


def resolve_subjects(config: PipelineConfig, requests: list[ErasureRequest], key: bytes) -> list[Subject]:
    """Each request's person, linked through the raw days (see the module doc)."""
    subjects = [Subject(request, user_ids={request.customer_id}) for request in requests]
    by_id = {request.customer_id: subject for request, subject in zip(requests, subjects, strict=True)}
    anonymous = re.compile(config.publishing.anonymous_user_ids)
    layout = config.layout
    folders = [(day, folder) for root in (layout.validated_events, layout.quarantine)
               for day, folder in sorted(lake.day_folders(root).items())]
    for _ in range(_MAX_PASSES):  # an id linked on a later day may have rows on earlier ones: read again
        known = sum(len(subject.user_ids) + len(subject.emails) for subject in subjects)
        for day, folder in folders:
            frame = _index_columns(folder)
            if not frame.empty:
                _link_day(frame, day, by_id, anonymous)
        if sum(len(subject.user_ids) + len(subject.emails) for subject in subjects) == known:
            break
    for subject in subjects:
        subject.user_keys = {user_key_of(user_id, key) for user_id in subject.user_ids}
    return subjects


def _index_columns(folder) -> pd.DataFrame:
    files = fs.list_dir(folder, suffix=".parquet", hidden=True)
    if not files:
        return pd.DataFrame(columns=list(_INDEX_COLUMNS))
    frames = [fs.read_parquet(path, columns=list(_INDEX_COLUMNS)).to_pandas() for path in files]
    return pd.concat(frames, ignore_index=True)


def _link_day(frame: pd.DataFrame, day: str, by_id: dict[str, Subject], anonymous: re.Pattern) -> None:
    """Add the day's identifiers of each person found in ``frame`` (their rows, then their sessions)."""
    emails = {email.lower(): subject for subject in set(by_id.values()) for email in subject.emails}
    user_ids = frame[C.USER_ID]
    owners = user_ids.map(by_id)
    by_email = frame[C.EMAIL].str.lower().map(emails)
    owners = owners.where(owners.notna(), by_email)
    hits = frame.loc[owners.notna()]
    if hits.empty:
        return
    for (_, row), subject in zip(hits.iterrows(), owners[owners.notna()], strict=True):
        subject.days.add(day)
        for column, found in ((C.EMAIL, subject.emails), (C.IP_ADDRESS, subject.ip_addresses)):
            if isinstance(row[column], str) and row[column]:
                found.add(row[column].lower() if column == C.EMAIL else row[column])
    sessions = {session: subject for session, subject in zip(hits[C.SESSION_ID], owners[owners.notna()], strict=True)
                if isinstance(session, str)}
    linked = frame.loc[frame[C.SESSION_ID].isin(sessions) & user_ids.notna() & ~user_ids.isin(by_id)]
    for user_id, session, ip in zip(linked[C.USER_ID], linked[C.SESSION_ID], linked[C.IP_ADDRESS], strict=True):
        if anonymous.search(user_id):  # the same browser before logging in; never another customer
            subject = sessions[session]
            subject.user_ids.add(user_id)
            by_id[user_id] = subject
            if isinstance(ip, str) and ip:
                subject.ip_addresses.add(ip)
    if not linked.empty:  # the anonymous ids' other rows of the day
        _link_day(frame.loc[~frame.index.isin(hits.index)], day, by_id, anonymous)
