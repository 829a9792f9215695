"""Data checks that gate the pipeline: Great Expectations suites, quarantine and the reasons why."""

from pipelines.validation.raw_events import RawDataError, RawValidationResult, validate_raw_events

__all__ = ["RawDataError", "RawValidationResult", "validate_raw_events"]
