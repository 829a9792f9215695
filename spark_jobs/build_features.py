"""Nightly feature job (spark-submit script): parse, build the session, ``pipelines.features.job.run``.

    spark-submit --master 'local[*]' spark_jobs/build_features.py --ds 2026-11-27 \\
        --overrides '{"features": {"window_days": 30}}'

Every setting comes from the layered config (``conf/``, ``PIPELINE__*`` variables, then ``--overrides``,
the run's Airflow param ``overrides`` as JSON), the same as every other task reads; this script has
no defaults of its own. ``--validated-root`` and ``--features-root`` read or write elsewhere than the
config's lake (benchmarks, tests); ``--outputs core`` writes only what the benchmark compares.

spark-submit runs this file directly, so the repository root is put on ``sys.path`` when
``pipelines`` is not installed; the executors need nothing from the repo (no Python UDFs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import pipelines  # noqa: F401
except ImportError:  # run as a file by spark-submit with a Python that lacks the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import SparkSession  # noqa: E402

from pipelines.config import ConfigError, load_config  # noqa: E402
from pipelines.dates import DateError, parse_ds  # noqa: E402
from pipelines.features import job  # noqa: E402
from pipelines.io import PartitionBusy  # noqa: E402
from pipelines.lake import partition_path  # noqa: E402

# The HMAC pads are 64-byte literals (128 hex digits) in the plan: keep them out of logs and the UI.
_REDACT_KEY_PADS = "(?i)[0-9a-f]{128}"


def _overrides(text: str) -> dict:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}); pass an object, e.g. '{{\"features\": "
                                         f"{{\"window_days\": 30}}}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a JSON object of config sections")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True, help="logical date YYYY-MM-DD (window end)")
    parser.add_argument("--overrides", type=_overrides, default={}, help="the run's config overrides (JSON)")
    parser.add_argument("--outputs", choices=job.OUTPUTS, default="all", help="core: events, vocab, sequences, "
                                                                             "popularity")
    parser.add_argument("--validated-root", type=Path, help="read validated days here instead of the lake's")
    parser.add_argument("--features-root", type=Path, help="write dt=<ds> here instead of the lake's features/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the job; returns the stats written to ``_stats.json``. Errors exit with a message."""
    args = parse_args(argv)
    try:
        config = load_config(args.overrides)
        plan = job.plan_run(config, parse_ds(args.ds), args.outputs, args.validated_root, args.features_root)
    except (ConfigError, DateError) as err:
        raise job.FeatureJobError(f"build_features: {err}") from None
    key = job.hash_key(config.features.hash_key_env)
    job.check_today(plan)
    owns_session = SparkSession.getActiveSession() is None  # leave a caller's (a test's) session running
    spark = (
        SparkSession.builder.appName(f"build_features ds={plan.ds}")
        .config(map=config.spark.jvm_conf())  # under spark-submit, its --conf already set these
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(config.features.shuffle_partitions))
        .config("spark.sql.redaction.string.regex", _REDACT_KEY_PADS)
        # The window's events are cached grouped and sorted by user: the per-user aggregation (sequences)
        # then runs as a sort aggregate over that order instead of a hash aggregate that spills and sorts.
        .config("spark.sql.execution.replaceHashWithSortAgg", "true")
        .getOrCreate()
    )
    try:
        stats = job.run(spark, plan, key)
    except PartitionBusy as err:
        raise job.FeatureJobError(f"build_features: {err}") from None
    finally:
        if owns_session:
            spark.stop()
    print(f"build_features: wrote {partition_path(plan.features_root, plan.ds)} ({stats['users_with_sequences']} sequences, "
          f"{stats['items']} items)")
    return stats


if __name__ == "__main__":
    main()
