"""The activation boundary: from the pseudonymous ``user_key`` back to the shop's customer ids.

Features, models and the lake's outputs know users only by ``user_key``, the HMAC-SHA256 of the raw
``user_id`` under the secret key in ``features.hash_key_env``. Publishing needs the customer id that the
shop's CRM tools match on, so it recomputes the same HMAC over the distinct user ids of the validated
raw layer (``raw/validated``, the trust boundary of the raw zone) in the trailing window, and maps the
keys it can. The ids exist only in memory here and in what ``publish`` writes to the serving database
and the activation exports; nothing in ``features/`` or ``outputs/`` learns them.

Anonymous visitors (``publishing.anonymous_user_ids``, e.g. ``anon-...`` cookies or DIGINETICA's
``session-...`` users) are never mapped: they have no customer to activate. An id longer than the
serving column (``publishing.max_customer_id_length``) is set aside, counted, to the quarantine.
Suppressed people (an accepted erasure or suppression request, ``pipelines.suppression``) are never
mapped either, so publishing never writes them again, whatever an older partition still holds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import PipelineConfig
from pipelines.suppression import Suppressions

TOO_LONG = "customer_id_too_long"  # quarantine reason


class CustomerKeyError(RuntimeError):
    """The customer ids cannot be recovered (no hash key, or no validated raw data for the window)."""


@dataclass
class CustomerIndex:
    """``user_key -> customer id`` for the customers of the window, and what was left out."""

    by_key: dict[str, str]
    anonymous: set[str] = field(default_factory=set)  # user keys of anonymous visitors
    too_long: dict[str, str] = field(default_factory=dict)  # user key -> id longer than the column allows
    suppressed: set[str] = field(default_factory=set)  # user keys of people with an erasure or suppression request
    days_read: int = 0


def user_key_of(user_id: str, key: bytes) -> str:
    """The feature job's pseudonym of ``user_id``: hex HMAC-SHA256 (``features.transforms.hmac_sha256_hex``)."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_key(config: PipelineConfig, env: dict[str, str] | None = None) -> bytes:
    name = config.features.hash_key_env
    value = (os.environ if env is None else env).get(name, "")
    if not value:
        raise CustomerKeyError(
            f"environment variable {name} (features.hash_key_env) is not set: publishing needs the same secret "
            "key the feature job pseudonymised user ids with, to map them back to customer ids. Give the "
            "publish task the same secret as build_features")
    return value.encode("utf-8")


def customer_index(config: PipelineConfig, ds: str, key: bytes) -> CustomerIndex:
    """The customers of the window ending at ``ds`` (as the feature job of ``ds`` saw it)."""
    folders = lake.window_partitions(config.layout.validated_events, ds, config.features.window_days)
    if not folders:
        raise CustomerKeyError(
            f"{config.layout.validated_events}: no validated raw day in the {config.features.window_days}-day "
            f"window ending {ds}, so no user key can be mapped to a customer id; run validate_raw_events for {ds}")
    user_ids: set[str] = set()
    for folder in folders:
        column = fs.read_parquet(folder, columns=[C.USER_ID]).column(C.USER_ID)
        user_ids.update(pc.unique(column.drop_null() if isinstance(column, pa.ChunkedArray) else column).to_pylist())
    anonymous_pattern = re.compile(config.publishing.anonymous_user_ids)
    limit = config.publishing.max_customer_id_length
    index = CustomerIndex(by_key={}, days_read=len(folders))
    suppressions = Suppressions(config.layout.suppression_list, config.features.hash_key_env)
    for user_id in user_ids:
        user_key = user_key_of(user_id, key)
        if user_id in suppressions:
            index.suppressed.add(user_key)
        elif anonymous_pattern.search(user_id):
            index.anonymous.add(user_key)
        elif len(user_id) > limit:
            index.too_long[user_key] = user_id
        else:
            index.by_key[user_key] = user_id
    return index
