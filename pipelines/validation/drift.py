"""Drift checks of a day of validated events against the trailing days, with bands computed from history.

The day's profile (volume, event-type mix, share of item events on items unseen in the trailing days,
share of events from users unseen in them, mean price) is recorded with the day's raw-event check, so
later days read their history from those records. A band is the trailing days' median +/- ``band_mads``
robust standard deviations (1.4826 * MAD), never narrower than the configured floor; days whose own
checks failed do not count. With fewer than ``min_history_days`` days the bands are unknown: that is a
warning, never a silent pass. The bands become Great Expectations expectations (severity in ``meta``)
so the Data Docs show the observed value beside its band.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines import lake
from pipelines.config import ChecksConfig, PipelineConfig
from pipelines.dates import trailing_days
from pipelines.lake import PART_FILE, partition_path
from pipelines.validation.checks import run_checks, with_severity

log = logging.getLogger(__name__)
UNKNOWN_ITEM, NEW_USER = "unknown_item", "new_user"
NON_FINITE_PRICES = "non_finite_prices"  # counted in the profile, left out of the price mean


def check_raw_drift(config: PipelineConfig, ds: str) -> dict[str, Any]:
    """Profile the validated day, compare it with the trailing days' bands; the result for the day's record."""
    validated = pd.read_parquet(partition_path(config.layout.validated_events, ds) / PART_FILE,
                                columns=[C.USER_ID, C.EVENT_TYPE, C.ITEM_ID, C.PRICE])
    days = trailing_days(ds, config.checks.history_days)
    known_items, known_users = _known_ids(config.layout.validated_events, days)
    frame = drift_frame(validated, known_items, known_users)
    profile = day_profile(frame)
    history = history_profiles(config, days)
    bands = drift_bands(history, config.checks)
    result = {"profile": profile, "history_days": len(history), "bands": bands, "success": True,
              "checks": [], "failures": [], "warnings": [], "data_docs": {}}
    if bands:
        result.update(run_checks(config.layout.gx_dir, "raw_drift", ds, {"events": frame},
                                 {"events": drift_expectations(bands, config.checks)}))
    else:
        result["warnings"] = [f"drift [warn]: only {len(history)} trailing day(s) with passed checks in the last "
                              f"{config.checks.history_days}; need {config.checks.min_history_days} to set bands, "
                              "so volume, event-type mix, unknown items, new users and price were not compared"]
    return result


def drift_frame(events: pd.DataFrame, known_items: set, known_users: set) -> pd.DataFrame:
    """The day's events with 0/1 indicator columns whose means are the shares the checks bound."""
    frame = pd.DataFrame({C.EVENT_TYPE: events[C.EVENT_TYPE].astype(object),
                          C.PRICE: finite_or_missing(pd.to_numeric(events[C.PRICE], errors="coerce"))})
    frame.attrs[NON_FINITE_PRICES] = int((~np.isfinite(pd.to_numeric(events[C.PRICE], errors="coerce")
                                          .dropna().to_numpy(dtype="float64"))).sum())
    for event_type in C.EVENT_TYPES:
        frame[f"is_{event_type}"] = (events[C.EVENT_TYPE] == event_type).astype("float64")
    has_item = events[C.ITEM_ID].notna()
    unknown = (~events[C.ITEM_ID].isin(known_items)).astype("float64")
    frame[UNKNOWN_ITEM] = unknown.where(has_item) if known_items else float("nan")  # item events only
    frame[NEW_USER] = (~events[C.USER_ID].isin(known_users)).astype("float64") if known_users else float("nan")
    return frame


def day_profile(frame: pd.DataFrame) -> dict[str, Any]:
    def mean(column: str) -> float | None:
        value = frame[column].mean()
        return None if pd.isna(value) else round(float(value), 6)

    return {"rows": int(len(frame)), "event_type_shares": {t: mean(f"is_{t}") for t in C.EVENT_TYPES},
            "unknown_item_share": mean(UNKNOWN_ITEM), "new_user_share": mean(NEW_USER),
            "price_mean": mean(C.PRICE), NON_FINITE_PRICES: int(frame.attrs.get(NON_FINITE_PRICES, 0))}


def finite_or_missing(values: pd.Series) -> pd.Series:
    """Non-finite numbers (inf, NaN) as missing: a band is never set from, or compared with, infinity."""
    return values.where(np.isfinite(values.to_numpy(dtype="float64")))


def history_profiles(config: PipelineConfig, days: list[str]) -> list[dict[str, Any]]:
    """Profiles of the trailing days whose raw-event checks passed (a failed day never sets a band)."""
    profiles = []
    for day in days:
        record = lake.read_record(config.layout.check_record(day, lake.RAW_EVENTS_CHECK))
        profile = (record.get("drift") or {}).get("profile")
        if record.get("success") and profile:
            profiles.append(profile)
    return profiles


def drift_bands(history: list[dict[str, Any]], checks: ChecksConfig) -> dict[str, Any]:
    """Band per metric from the trailing profiles; {} when there are too few of them."""
    if len(history) < checks.min_history_days:
        return {}

    def values(get) -> list[float]:
        return [v for v in (get(p) for p in history) if v is not None]

    bands = {"volume": robust_band(values(lambda p: p["rows"]), checks.band_mads, relative_floor=checks.volume_min_band),
             "price_mean": robust_band(values(lambda p: p["price_mean"]), checks.band_mads,
                                       relative_floor=checks.price_min_band),
             "event_type_shares": {t: robust_band(values(lambda p, t=t: p["event_type_shares"].get(t)),
                                                  checks.band_mads, absolute_floor=checks.share_min_band, cap=1.0)
                                   for t in C.EVENT_TYPES}}
    for key in ("unknown_item_share", "new_user_share"):
        bands[key] = robust_band(values(lambda p, key=key: p[key]), checks.band_mads,
                                 absolute_floor=checks.share_min_band, cap=1.0)
    return bands


def robust_band(values: list[float], mads: float, relative_floor: float = 0.0, absolute_floor: float = 0.0,
                cap: float | None = None) -> dict[str, Any] | None:
    """median +/- max(mads * 1.4826 * MAD, floors), clipped at 0 (and at ``cap``); None without values."""
    if not values:
        return None
    median = statistics.median(values)
    spread = 1.4826 * statistics.median(abs(v - median) for v in values)
    half = max(mads * spread, relative_floor * abs(median), absolute_floor)
    high = median + half if cap is None else min(cap, median + half)
    return {"median": round(median, 6), "min": round(max(0.0, median - half), 6), "max": round(high, 6),
            "days": len(values)}


def drift_expectations(bands: dict[str, Any], checks: ChecksConfig) -> list:
    import great_expectations.expectations as gxe

    severity = checks.severity
    note = f"median +/- {checks.band_mads} robust sd of the trailing days"
    found = []
    if bands.get("volume"):
        volume = bands["volume"]
        found.append(with_severity(gxe.ExpectTableRowCountToBeBetween(
            min_value=int(volume["min"]), max_value=int(volume["max"] + 0.5)), "volume", severity.volume,
            f"{note} (median {volume['median']:.0f} rows over {volume['days']} days)"))
    for event_type, band in bands.get("event_type_shares", {}).items():
        if band:
            found.append(with_severity(gxe.ExpectColumnMeanToBeBetween(
                column=f"is_{event_type}", min_value=band["min"], max_value=band["max"]), "event_type_mix",
                severity.event_type_mix, f"share of {event_type} events; {note}"))
    for key, column, check, level in (("unknown_item_share", UNKNOWN_ITEM, "unknown_items", severity.unknown_items),
                                      ("new_user_share", NEW_USER, "new_users", severity.new_users)):
        if bands.get(key):  # only too many is a problem: fewer new users or items is not drift to stop for
            found.append(with_severity(gxe.ExpectColumnMeanToBeBetween(column=column, max_value=bands[key]["max"]),
                                       check, level, f"upper band only; {note}"))
    if bands.get("price_mean"):
        band = bands["price_mean"]
        found.append(with_severity(gxe.ExpectColumnMeanToBeBetween(
            column=C.PRICE, min_value=band["min"], max_value=band["max"]), "price", severity.price, note))
    return found


def _known_ids(validated_root: Path, days: list[str]) -> tuple[set, set]:
    items: set = set()
    users: set = set()
    for day in days:
        folder = partition_path(validated_root, day)
        if fs.exists(folder / PART_FILE):
            frame = fs.read_parquet(folder / PART_FILE, columns=[C.ITEM_ID, C.USER_ID]).to_pandas()
            items.update(frame[C.ITEM_ID].dropna().unique())
            users.update(frame[C.USER_ID].dropna().unique())
    return items, users

