"""Data checks that gate the pipeline: Great Expectations suites, quarantine and the reasons why.

- ``raw_day``: the ``validate_raw_events`` stage (row checks, quarantine, drift; the day's record);
- ``raw_events`` / ``raw_events_suite`` / ``jsonl``: the row checks of one raw day and its GX suite;
- ``drift``: the day's profile against bands from the trailing days;
- ``features``: the ``validate_features`` stage (sequences, vocabulary, clean events);
- ``checks``: GX context, checkpoints with severities, Data Docs pages.
"""

from pipelines.validation.raw_events import RawDataError, RawValidationResult, validate_raw_events

__all__ = ["RawDataError", "RawValidationResult", "validate_raw_events"]
