"""What the lock installs: one PySpark distribution, whole, and the parts its imports need."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest


def test_only_the_full_pyspark_is_installed():
    assert distribution("pyspark").version.startswith("4.")
    with pytest.raises(PackageNotFoundError):  # it ships the same pyspark/ files at another version
        distribution("pyspark-client")


def test_a_python_c_stage_survives_pyspark_connects_dependency_check():
    """Without Spark Connect's dependencies, importing it under ``python -c`` exits 0 silently (doctest mode)."""
    code = "import pyspark.sql.connect.utils as u; u.check_dependencies(); print('still running')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "still running" in done.stdout, done.stdout + done.stderr
