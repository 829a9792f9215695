"""Which day folders a feature run reads: plain Python over folder names, no Spark.

Only ``dt=YYYY-MM-DD`` folders count; hidden staging folders (``.staging-...``) and anything else are
ignored, so a half-written partition of another run is never picked up.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

_PREFIX = "dt="


def _day_folders(root: Path) -> dict[str, Path]:
    """``{ds: folder}`` for every ``dt=YYYY-MM-DD`` folder directly under ``root`` (none if no root)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for child in root.iterdir():
        if not (child.is_dir() and child.name.startswith(_PREFIX)):
            continue
        day = child.name[len(_PREFIX):]
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            continue
        found[day] = child
    return found


def window_bounds(ds: str, window_days: int) -> tuple[str, str]:
    """First and last day (inclusive) of the trailing window of ``window_days`` ending at ``ds``."""
    if window_days < 1:
        raise ValueError(f"window_days={window_days}: must be >= 1")
    end = dt.date.fromisoformat(ds)
    return (end - dt.timedelta(days=window_days - 1)).isoformat(), end.isoformat()


def window_partitions(root: Path, ds: str, window_days: int) -> list[Path]:
    """Existing day folders of ``root`` inside the trailing window ending at ``ds``, oldest first."""
    return partitions_between(root, *window_bounds(ds, window_days))


def partitions_between(root: Path, first: str, last: str) -> list[Path]:
    """Existing day folders of ``root`` with ``first <= day <= last``, oldest first."""
    folders = _day_folders(root)
    return [folders[day] for day in sorted(folders) if first <= day <= last]


def latest_partition_before(root: Path, ds: str, required_child: str) -> Path | None:
    """The most recent ``root/dt=D`` with D < ds that holds ``required_child``; None if there is none."""
    folders = _day_folders(root)
    earlier = [day for day in sorted(folders) if day < ds and (folders[day] / required_child).is_dir()]
    return folders[earlier[-1]] if earlier else None
