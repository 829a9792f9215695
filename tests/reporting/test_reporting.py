"""The run's record, collected once, and its two renderings: the terminal summary and the HTML/Markdown report."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import columns as C
from pipelines import lake
from pipelines.config import load_config
from pipelines.io import atomic_partition, write_json_atomic
from pipelines.lake import partition_path
from pipelines.reporting.record import collect_run_record
from pipelines.reporting.report import write_run_report
from pipelines.reporting.summary import format_run_summary
from tests.trained_registry import DS, N_ITEMS, write_features

RAW = {"ds": DS, "success": True, "rows_in": 120, "rows_accepted": 118, "rows_quarantined": 2, "blank_lines": 4,
       "reasons": {"malformed_json": 2}, "failures": [], "warnings": ["volume [warn]: events observed 118"]}
TEST = {"hr_at_10": 0.5, "ndcg_at_10": 0.3}


@pytest.fixture
def config(tmp_path):
    paths = {key: str(tmp_path / key) for key in ("var_dir", "lake_dir", "gx_dir", "mlflow_dir", "reports_dir")}
    return load_config({"paths": paths})


def _write_day(config, *, through_gate: bool) -> None:
    layout = config.layout
    write_json_atomic(layout.check_record(DS, lake.RAW_EVENTS_CHECK), RAW if through_gate else
                      {**RAW, "success": False, "failures": ["too many rows quarantined"]})
    if not through_gate:
        return
    write_features(layout.features, DS)
    write_json_atomic(layout.check_record(DS, lake.FEATURES_CHECK), {"success": True, "failures": [], "warnings": []})
    write_json_atomic(layout.evaluation_record(DS), {
        "ds": DS, "k": 10, "metric": "ndcg_at_10", "num_test_users": 3, "popularity": TEST, "champion": None,
        "candidates": [{"model": "sasrec", "version": "3", "run_id": "0" * 32, "test": TEST}]})
    write_json_atomic(layout.decision_record(DS), {"verdict": "promoted sasrec version 3", "champion_version": "3",
                                                   "reasons": [], "control": {"mode": "auto", "who": "ada"}})
    with atomic_partition(partition_path(layout.recommendations, DS)) as staging:
        pq.write_table(pa.table({C.USER_KEY: ["a", "a", "b"], C.RANK: [1, 2, 1], C.ITEM_IDX: [1, 2, N_ITEMS],
                                 C.MODEL_VERSION: ["3", "3", "3"]}), staging / lake.PART_FILE)
    with atomic_partition(partition_path(layout.audiences, DS)) as staging:
        pq.write_table(pa.table({C.CAMPAIGN: ["spring", "spring", "sale"], C.USER_KEY: ["a", "b", "a"]}),
                       staging / lake.PART_FILE)


def test_a_day_that_went_through_is_one_record_for_the_summary_and_the_report(config):
    _write_day(config, through_gate=True)
    record = collect_run_record(config, DS, stage_seconds={"DAG run (total)": 12.5})
    assert record["stopped_at"] is None
    assert record["checks"][lake.RAW_EVENTS_CHECK]["rows_in"] == 120
    assert record["recommendations"]["rows"] == 3 and record["recommendations"]["users"] == 2
    assert record["recommendations"]["recommended_items"] == 3 and record["audiences"] == {"sale": 1, "spring": 2}
    text = format_run_summary(record)
    assert "events in       120   accepted 118   quarantined 2 (malformed_json 2)   blank lines 4" in text
    assert "Recommendations: 3 rows for 2 users, by model version 3" in text
    assert "Audiences: 2 campaigns, sale 1, spring 2 users" in text and "DAG run (total)" in text
    assert "Gate: promoted sasrec version 3" in text and "warn: volume [warn]" in text

    written = write_run_report(config, DS)
    page = (config.layout.run_report(DS, "html")).read_text()
    assert written["headline"] == "promoted sasrec version 3" and written["stopped_at"] is None
    assert "Campaign audiences" in page and "catalogue coverage" in page
    assert page.count("<svg") == 5  # NDCG trend, volume, loss and validation curves (empty: no runs), bias
    for title in ("NDCG@k over the last nightly runs", "Events per day", "Recommendations per item-popularity"):
        assert title in page
    assert len(set(re.findall(r'id="([^"]+)"', page))) == len(re.findall(r'id="([^"]+)"', page))  # no clashes
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page  # inline SVG, one self-contained file
    assert config.layout.run_report(DS, "md").read_text().startswith(f"# Nightly run {DS}")
    write_run_report(config, DS)
    assert config.layout.run_report(DS, "html").read_text() == page  # a rerun writes the same page


def test_a_day_stopped_at_validation_says_so_and_records_from_before_the_run_do_not_count(config):
    _write_day(config, through_gate=False)
    record = collect_run_record(config, DS)
    assert record["stopped_at"] == lake.RAW_EVENTS_CHECK and record["recommendations"] == {}
    assert "data checks: FAILED, 1 failure(s)" in format_run_summary(record)
    assert "Gate: no decision recorded" in format_run_summary(record)
    page_info = write_run_report(config, DS)
    assert page_info["headline"] == "stopped at the raw_events data checks; champion unchanged"
    assert "too many rows quarantined" in config.layout.run_report(DS, "html").read_text()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    stale = collect_run_record(config, DS, run_started=later)  # tonight's run wrote nothing yet
    assert stale["checks"][lake.RAW_EVENTS_CHECK] == {} and stale["stopped_at"] == lake.RAW_EVENTS_CHECK


def test_bar_centres_sit_on_their_ticks_and_legends_keep_long_names():
    from pipelines.reporting.charts import bar_chart, line_chart, to_svg

    long_name = "recommended by the champion"
    figure = bar_chart("shares", ["1", "2", "3"], {long_name: [0.5, 0.3, 0.2], "uniform": [1 / 3] * 3}, "share")
    axes = figure.axes[0]
    centres = [patch.get_x() + patch.get_width() / 2 for patch in axes.patches]
    groups = [(centres[i] + centres[i + 3]) / 2 for i in range(3)]  # the two series' bars of each label
    assert groups == pytest.approx(list(axes.get_xticks()))
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [long_name, "uniform"]
    days = [f"2026-11-{day}" for day in range(10, 28)]
    trend = line_chart("NDCG", days, {"sasrec": [0.1] * 17 + [None]}, "NDCG")
    assert len(trend.axes[0].get_xticks()) >= 6  # more than the min/max ticks
    assert to_svg(trend).startswith("<svg") and to_svg(trend) == to_svg(trend)
    assert re.search(r"no data yet", to_svg(line_chart("empty", [], {})))
