"""The raw events suite on GX's Spark engine refuses the same rows, for the same reasons, as on pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.validation.jsonl import LinePart, parse_part
from pipelines.validation.raw_events_suite import (
    DUPLICATE_EVENT_ID,
    EVENT_TIME_OUTSIDE_INTERVAL,
    GX_COLUMNS,
    UNPARSEABLE_EVENT_TIME,
    add_parsed_columns,
    as_spark_frame,
    missing_reason,
    run_raw_events_checkpoint,
)
from tests.validation.hostile import CORPUS, line

pytestmark = pytest.mark.spark

DS = "2026-11-27"
START = datetime(2026, 11, 27, tzinfo=UTC)


def _frame():
    lines = [raw for _, raw, _ in CORPUS] + [
        line(100), line(101, event_id="h100"),  # a duplicate of the line before
        line(102, event_time="2026-11-28T00:00:00Z"), line(103, event_time="yesterday"),
        line(104, user_id="   "), line(105, event_type=None), line(106, item_id=None, event_type="purchase"),
        line(107, price=-1), *[line(200 + n, user_id=f"u{n}") for n in range(50)]]
    part = LinePart([("events-00000.jsonl", number, raw) for number, raw in enumerate(lines, start=1)])
    return add_parsed_columns(parse_part(part).rows)


def test_the_suite_on_spark_fails_the_same_rows_for_the_same_reasons(tmp_path, spark):
    frame = _frame()
    interval = (START, START + timedelta(days=1))
    on_pandas = run_raw_events_checkpoint(tmp_path / "gx", frame, DS, *interval)
    spark_frame = as_spark_frame(spark, frame)
    assert spark_frame.columns == list(GX_COLUMNS) and spark_frame.count() == len(frame)
    on_spark = run_raw_events_checkpoint(tmp_path / "gx", spark_frame, DS, *interval, engine="spark")

    assert on_spark.failing_rows == on_pandas.failing_rows
    expected = {reason for _, _, reason in CORPUS if reason not in (None, "invalid_utf8", "malformed_json")}
    expected |= {DUPLICATE_EVENT_ID, EVENT_TIME_OUTSIDE_INTERVAL, UNPARSEABLE_EVENT_TIME,
                 missing_reason("user_id"), missing_reason("event_type"), "missing_item_id", "negative_price"}
    assert expected <= set(on_spark.failing_rows)
    assert on_spark.data_docs_path != on_pandas.data_docs_path  # each engine's run has its page
    clean = [int(n) for n in frame.index[frame["user_id"].fillna("").str.fullmatch(r"u\d+")]]
    refused = {row for rows in on_spark.failing_rows.values() for row in rows}
    assert not refused & set(clean[-50:])


def test_an_unknown_engine_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"engine='duckdb'.*\['pandas', 'spark'\]"):
        run_raw_events_checkpoint(tmp_path / "gx", _frame(), DS, START, START + timedelta(days=1), engine="duckdb")
