"""Days as the pipeline counts them: a run's ``ds`` is the UTC day ``[ds 00:00, ds+1 00:00)``.

Plain functions over ISO dates (``YYYY-MM-DD`` strings), so every stage, the Spark job and the
local runner agree on what "the day", "the trailing days" and "the window" mean.
"""

from __future__ import annotations

import datetime as dt


class DateError(ValueError):
    """A date that is not ``YYYY-MM-DD``."""


def parse_ds(value: str | None, what: str = "--ds") -> str:
    """``value`` as a canonical ISO date; None means yesterday (UTC), the night that just ended."""
    if value is None:
        return yesterday()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise DateError(f"{what} {value!r}: not a date; use YYYY-MM-DD, e.g. {what} 2026-11-27") from None


def yesterday() -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


def day_interval(ds: str) -> tuple[dt.datetime, dt.datetime]:
    """The day a run processes: ``[ds 00:00 UTC, ds+1 00:00 UTC)``."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def shift(ds: str, days: int) -> str:
    """``ds`` moved by ``days`` (negative: earlier)."""
    return (dt.date.fromisoformat(ds) + dt.timedelta(days=days)).isoformat()


def trailing_days(ds: str, n: int) -> list[str]:
    """The ``n`` days before ``ds``, oldest first (``ds`` itself not included)."""
    return [shift(ds, -offset) for offset in range(n, 0, -1)]


def window_bounds(ds: str, window_days: int) -> tuple[str, str]:
    """First and last day (inclusive) of the trailing window of ``window_days`` ending at ``ds``."""
    if window_days < 1:
        raise ValueError(f"window_days={window_days}: must be >= 1")
    return shift(ds, -(window_days - 1)), dt.date.fromisoformat(ds).isoformat()
