"""The partition swap under SIGKILL, disk full and a second writer: the old partition or the new, whole."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from pipelines.config import REPO_ROOT
from pipelines.io import FAULT_POINT_ENV, NO_EXCHANGE_ENV, PartitionBusy, atomic_partition, partition_lock
from tests.faults.harness import KILLED, leftovers

pytestmark = pytest.mark.faults
WRITE = """
import sys
from pathlib import Path
from pipelines.io import atomic_partition
with atomic_partition(Path(sys.argv[1])) as staging:
    for n in range(3):
        (staging / f"part-{n}.txt").write_text(sys.argv[2])
"""


def _write(target, content: str, **env) -> int:
    import os

    done = subprocess.run([sys.executable, "-c", WRITE, str(target), content], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True)
    return done.returncode


def _content(target) -> set[str]:
    return {p.read_text() for p in target.glob("part-*.txt")}


@pytest.mark.parametrize(("swap", "point"), [("exchange", "partition-staged"), ("renames", "partition-staged"),
                                             ("renames", "partition-retired")])
def test_a_writer_killed_mid_swap_never_leaves_a_half_partition(tmp_path, swap, point):
    target = tmp_path / "dt=2026-11-27"
    mode = {NO_EXCHANGE_ENV: "1"} if swap == "renames" else {}
    assert _write(target, "old", **mode) == 0
    assert _write(target, "new", **mode, **{FAULT_POINT_ENV: point}) == KILLED
    visible = _content(target) if target.exists() else set()
    assert visible in ({"old"}, set())  # the old partition whole, or (two renames, killed between) none
    assert leftovers(tmp_path)  # what the killed writer left ...
    assert _write(target, "new", **mode) == 0  # ... the next writer restores or removes, then writes
    assert _content(target) == {"new"} and len(list(target.iterdir())) == 3
    assert leftovers(tmp_path) == []


def test_the_next_writer_restores_a_partition_left_retired(tmp_path):
    target = tmp_path / "dt=2026-11-27"
    assert _write(target, "old", **{NO_EXCHANGE_ENV: "1"}) == 0
    assert _write(target, "new", **{NO_EXCHANGE_ENV: "1", FAULT_POINT_ENV: "partition-retired"}) == KILLED
    assert not target.exists()
    with partition_lock(target):  # what any writer of the partition does first
        pass
    assert _content(target) == {"old"} and leftovers(tmp_path) == []


def test_disk_full_while_writing_keeps_the_previous_partition(tmp_path):
    target = tmp_path / "dt=2026-11-27"
    with atomic_partition(target) as staging:
        (staging / "part-0.txt").write_text("old")
    with pytest.raises(OSError, match="No space left"), atomic_partition(target) as staging:
        (staging / "part-0.txt").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk raises mid-write
    assert _content(target) == {"old"} and leftovers(tmp_path) == []


def test_a_second_writer_of_the_same_partition_stops_with_a_clear_message(tmp_path):
    target = tmp_path / "dt=2026-11-27"
    with partition_lock(target):
        with pytest.raises(PartitionBusy, match=r"another run \(pid \d+\) is writing this partition"):
            with atomic_partition(target):
                pass
        done = subprocess.run([sys.executable, "-c", WRITE, str(target), "other"], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 1 and "PartitionBusy" in done.stderr and "Wait for it to finish" in done.stderr
    assert _write(target, "mine") == 0 and _content(target) == {"mine"}
