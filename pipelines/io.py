"""Atomic, crash-safe writes on the local or mounted filesystem: whole partitions and single text files.

The files inside a partition are written through ``pipelines.filesystem``; the swap below needs a
POSIX rename (the README says how a partition is committed on an object store instead).

A stage writes its whole partition into a hidden staging folder next to the target, then swaps it in.
Readers see the old partition or the new one, never a half-written one, and a rerun replaces rather
than appends. The swap is one ``renameat2(RENAME_EXCHANGE)`` where the filesystem has it (Linux ext4,
xfs, tmpfs ...): there is no moment without a partition, even if the writer is killed. Elsewhere it
is two renames (old out to ``.retired-*``, new in); a writer killed between them leaves the old
partition in ``.retired-*``, and the next writer of that partition puts it back before it starts.

One writer at a time per partition: ``partition_lock`` (an ``flock`` on a hidden lock file beside
it) is held from staging to swap. A second run of the same day fails at once with a message naming
the run that holds it (Airflow retries the task later), so outputs are one run's, never a mix. The
lock holder also removes the ``.staging-*`` and ``.retired-*`` folders that killed writers left.

``PIPELINE_FAULT_POINT`` names a point (``FAULT_POINTS``, ``name:N`` for its N-th pass) at which the
process kills itself with SIGKILL: the fault suite (``make test-faults``) uses it to stop a stage
part-way through its write. Unset (always, outside that suite), it costs one dictionary look-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines import filesystem as fs

FAULT_POINT_ENV = "PIPELINE_FAULT_POINT"
NO_EXCHANGE_ENV = "PIPELINE_IO_NO_EXCHANGE"  # "1": use the two-rename swap (tests of its recovery)
FAULT_POINTS = ("partition-staged", "partition-retired", "text-staged", "candidate-registered")
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


class PartitionBusy(RuntimeError):
    """Another process is writing the same partition right now."""


_FAULT_COUNTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``PIPELINE_FAULT_POINT`` is ``name`` (or ``name:N``, its N-th pass)."""
    wanted = os.environ.get(FAULT_POINT_ENV)
    if not wanted or wanted.split(":")[0] != name:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if _FAULT_COUNTS[name] == int(wanted.split(":")[1] if ":" in wanted else 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_partition(target: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``target`` whole, on error it is removed.

    >>> with atomic_partition(Path("lake/features/dt=2026-11-27")) as staging:
    ...     (staging / "part-0.parquet").write_bytes(b"...")
    """
    target = Path(target)
    with partition_lock(target):
        staging = staging_path_for(target)
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        publish_partition(staging, target)


@contextlib.contextmanager
def partition_lock(target: Path) -> Iterator[None]:
    """Hold ``target``'s writer lock (see the module doc); recover what a killed writer left first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".lock-{target.name}"
    handle = _acquire(lock_path, target)
    try:
        recover_partition(target)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()  # before unlocking: a waiter that opened it re-checks the inode
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _acquire(lock_path: Path, target: Path):
    while True:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PartitionBusy(
                f"{target}: another run ({holder}) is writing this partition right now; two runs of the same "
                f"day never mix their outputs, so this one stops. Wait for it to finish and rerun (Airflow "
                f"retries the task), or stop the other run first") from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file the previous holder unlinked while we waited to open it
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            return handle
        handle.close()


def recover_partition(target: Path) -> list[Path]:
    """Restore a partition a killed two-rename swap left retired; remove killed writers' leftovers.

    Call it holding the partition's lock (``partition_lock`` does). Returns what was removed.
    """
    target = Path(target)
    retired = sorted(target.parent.glob(f".retired-{target.name}-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and retired:
        os.replace(retired.pop(), target)
    leftovers = [*retired, *target.parent.glob(f".staging-{target.name}-*")]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def publish_partition(staging: Path, target: Path) -> None:
    """Swap a fully written ``staging`` folder in place of ``target`` (which may not exist)."""
    staging, target = Path(staging), Path(target)
    fault_point("partition-staged")
    if target.exists() and _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old partition
        return
    retired = target.parent / f".retired-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.replace(target, retired)
        fault_point("partition-retired")
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the system or filesystem cannot."""
    if os.environ.get(NO_EXCHANGE_ENV) == "1":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # not glibc 2.28+
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, f"swapping {a} and {b}: {os.strerror(code)}")


def staging_path_for(target: Path) -> Path:
    """A fresh sibling folder name for writers (like Spark) that must create the folder themselves."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see all of it or the file before.

    On a POSIX filesystem through a temporary sibling and a rename; on an object store one PUT is
    atomic already (``pipelines.filesystem.write_text``).
    """
    if not fs.is_local(path):
        fs.write_text(path, text)
        return
    path = Path(fs.resolve(path)[1])
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fs.write_text(tmp, text)
        fault_point("text-staged")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically (see ``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
