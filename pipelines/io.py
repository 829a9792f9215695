"""Atomic writes on the local or mounted filesystem: whole partitions, and single text files.

A stage writes its whole partition into a hidden staging folder next to the target, then swaps it
in with ``os.replace``. Readers see the old partition or the new one, never a half-written one, and
a rerun replaces rather than appends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_partition(target: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``target`` whole, on error it is removed.

    >>> with atomic_partition(Path("lake/features/dt=2026-11-27")) as staging:
    ...     (staging / "part-0.parquet").write_bytes(b"...")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_partition(staging, target)


def publish_partition(staging: Path, target: Path) -> None:
    """Swap a fully written ``staging`` folder in place of ``target`` (which may not exist)."""
    retired = target.parent / f".retired-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def staging_path_for(target: Path) -> Path:
    """A fresh sibling folder name for writers (like Spark) that must create the folder themselves."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically (see ``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
