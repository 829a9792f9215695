"""The champion as of a day: a backfill of an earlier day is judged and scored by that day's champion.

``version_as_of`` on hand-written histories; then the gate and scoring on the session's real registry.
"""

from __future__ import annotations

from pipelines.io import write_json_atomic
from pipelines.registry.champion import version_as_of
from tests.trained_registry import DS, champion_version, evaluate, promote


def move(ds, version, action="promote"):
    return {"action": action, "ds": ds, "version": version}


def test_moves_count_from_their_day_whenever_they_were_recorded():
    history = [move("2026-11-27", "1"), move("2026-11-30", "3"), move("2026-11-28", "2")]  # 28 backfilled last
    assert version_as_of(history, "2026-11-26") is None
    assert version_as_of(history, "2026-11-27") == "1"
    assert version_as_of(history, "2026-11-28") == "2"
    assert version_as_of(history, "2026-11-29") == "2"
    assert version_as_of(history, "2026-11-30") == "3"
    assert version_as_of(history, "2026-12-05") == "3"


def test_a_later_move_for_the_same_day_wins_and_a_rollback_counts_from_the_night_before_it():
    history = [move("2026-11-27", "1"), move("2026-11-28", "2"), move("2026-11-28", "4", "force"),
               move(None, "1", "rollback")]
    assert version_as_of(history, "2026-11-27") == "1"
    assert version_as_of(history, "2026-11-28") == "1"  # the rollback replaced the 28th's champion
    assert version_as_of(history, "2026-11-29") == "1"
    assert version_as_of([move(None, "5", "rollback")], "2026-01-01") == "5"


def test_backfill_of_an_earlier_day_compares_with_that_days_champion_and_leaves_the_live_alias(fresh):
    from pipelines.registry.champion import approve_for_day, champion_as_of, read_history

    config, weak, strong = fresh
    later = "2026-11-30"
    approve_for_day(config, weak["version"], action="force", ds=later, who="ada", reason="bootstrap",
                    run_id="night-30", previous=None)
    write_json_atomic(config.layout.decision_record(later), {"ds": later, "promoted": True})
    try:
        assert champion_version(config) == weak["version"]
        assert champion_as_of(config, DS) is None  # nothing was champion on the 27th
        assert evaluate(config, strong)["champion"] is None  # so the 27th's gate has no champion to beat
        decision = promote(config, strong)
        assert decision["promoted"] and decision["previous_champion_version"] is None
        assert champion_version(config) == weak["version"]  # the live alias is the later night's
        assert str(champion_as_of(config, DS).version) == strong["version"]
        assert str(champion_as_of(config, later).version) == weak["version"]
        entry = read_history(config)[-1]
        assert entry["ds"] == DS and entry["live"] is False and entry["version"] == strong["version"]
        again = promote(config, strong)  # the same backfill again: the 27th's champion already, no new entry
        assert again["verdict"].startswith("unchanged") and len(read_history(config)) == 2
    finally:
        config.layout.decision_record(later).unlink()
