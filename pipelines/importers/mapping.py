"""The mapping file that says how a shop's own export becomes raw events (``conf/mappings/*.yaml``).

Keys are named after *our* raw columns (``pipelines.columns``); values name *their* columns. A field
is one of:

- ``their_column``: copy that column;
- ``[col_a, col_b]``: the first of these that is not empty; an entry may be
  ``{column: col_b, prefix: "session-"}`` to keep ids from different columns apart;
- ``{value: constant}``: the same value on every row.

``event_time`` and ``event_type`` have their own shapes (format and time zone; value translation).
Unknown keys and wrong values fail with the key, the mapping file and the allowed values named.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import columns as C

TIME_FORMATS = ("iso8601", "epoch_seconds", "epoch_millis")  # or any strptime pattern, e.g. "%d/%m/%Y %H:%M"
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class MappingError(ValueError):
    """The mapping file is unreadable or says something impossible; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRef(_Strict):
    column: str
    prefix: str = ""  # put in front of the value, e.g. to keep session ids apart from user ids


class FieldSpec(_Strict):
    """Where one raw column comes from: the first non-empty of ``columns``, or a constant ``value``."""

    columns: tuple[ColumnRef, ...] = ()
    value: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        if isinstance(data, str):
            return {"columns": [{"column": data}]}
        if isinstance(data, list):
            return {"columns": [{"column": c} if isinstance(c, str) else c for c in data]}
        if isinstance(data, dict) and "column" in data:
            return {"columns": [{"column": data["column"], "prefix": data.get("prefix", "")}],
                    **{k: v for k, v in data.items() if k not in ("column", "prefix")}}
        return data

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.columns) == (self.value is not None):
            raise ValueError("give either a column (or a list of columns) or {value: constant}, not both or neither")
        return self


class OrderedTime(_Strict):
    """Time made up from the order of lines, for exports without timestamps (sequence files)."""

    start: dt.datetime  # time of each user's first line (or the file's first line), with an offset
    step_seconds: float = Field(gt=0)  # added for every further line
    per: Literal["user", "file"] = "user"  # count lines per user (each starts at ``start``) or per file

    @field_validator("start")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("from_order.start needs a UTC offset, e.g. 2018-01-01T00:00:00Z")
        return value


class TimeSpec(_Strict):
    column: str | None = None  # their time column
    format: str = "iso8601"  # iso8601 | epoch_seconds | epoch_millis | a strptime pattern
    plus_millis_column: str | None = None  # milliseconds to add (e.g. DIGINETICA's time since session start)
    from_order: OrderedTime | None = None  # instead of a column: synthesise the time from line order

    @model_validator(mode="after")
    def _column_or_order(self):
        if (self.column is None) == (self.from_order is None):
            raise ValueError("give either 'column' (with 'format') or 'from_order', exactly one")
        if self.format not in TIME_FORMATS and "%" not in self.format:
            raise ValueError(f"format {self.format!r}: use one of {list(TIME_FORMATS)} or a strptime "
                             f"pattern such as '%Y-%m-%d %H:%M:%S'")
        return self


class EventTypeSpec(_Strict):
    column: str | None = None
    value: str | None = None  # every row has this type (e.g. a file of views only)
    values: dict[str, str] = {}  # their value -> ours; values not listed are quarantined

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _known_types(self):
        if (self.column is None) == (self.value is None):
            raise ValueError("give either 'column' (with 'values') or a constant 'value'")
        ours = ([self.value] if self.value is not None else []) + list(self.values.values())
        unknown = sorted({str(v) for v in ours} - set(C.EVENT_TYPES))
        if unknown:
            raise ValueError(f"event types {unknown} are not ours; allowed: {list(C.EVENT_TYPES)}")
        if self.column is not None and not self.values:
            raise ValueError("'values' must map each of their event types to ours, e.g. {view: product_view}")
        return self


class Mapping(_Strict):
    source: str  # short name of the source; lands as raw/events/dt=D/import-<source>-<file>.jsonl
    format: Literal["csv", "jsonl"] = "csv"
    separator: str = ","  # csv only; " " for whitespace-separated sequence files
    header: bool = True  # csv only: the first line names the columns
    column_names: tuple[str, ...] = ()  # csv without a header: the names of the fields, in order
    null_values: tuple[str, ...] = ("", "NA", "N/A", "NULL", "null", "None", "\\N")
    timezone: str  # IANA zone of times that carry no UTC offset, e.g. UTC or Europe/Berlin
    event_time: TimeSpec
    event_type: EventTypeSpec
    user_id: FieldSpec
    item_id: FieldSpec | None = None
    event_id: FieldSpec | None = None  # default: <source>-<hash of file name and line>, stable on re-import
    session_id: FieldSpec | None = None  # default: <user_id>:<day>; the feature job sessionises by gap anyway
    category: FieldSpec | None = None
    price: FieldSpec | None = None
    campaign: FieldSpec | None = None
    utm_source: FieldSpec | None = None
    device: FieldSpec = FieldSpec(value="unknown")
    search_query: FieldSpec | None = None
    email: FieldSpec | None = None
    ip_address: FieldSpec | None = None
    user_agent: FieldSpec | None = None
    max_price: float = Field(default=1_000_000.0, gt=0)  # prices above are absurd: quarantined
    max_reject_rate: float = Field(default=0.05, ge=0, le=1)  # share of quarantined rows that fails the import

    @field_validator("source")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SOURCE_NAME.match(value):
            raise ValueError(f"{value!r}: use lowercase letters, digits, '-' and '_' (it names files)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone; use e.g. UTC, Europe/Berlin, America/New_York") from None
        return value

    @model_validator(mode="after")
    def _csv_shape(self):
        if self.format == "csv" and not self.header and not self.column_names:
            raise ValueError("a csv without a header needs 'column_names' (the fields in order)")
        if len(self.separator) != 1:
            raise ValueError(f"separator {self.separator!r}: must be one character")
        return self

    def field_specs(self) -> dict[str, FieldSpec]:
        """Raw column -> spec, for every plain field the mapping fills (event_time/event_type apart)."""
        names = [c for c in C.RAW_COLUMNS if c not in (C.EVENT_TIME, C.EVENT_TYPE)]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def referenced_columns(self) -> dict[str, str]:
        """Their column -> the mapping key that names it (to say which key points at a missing column)."""
        refs = {ref.column: key for key, spec in self.field_specs().items() for ref in spec.columns}
        for column, key in ((self.event_time.column, "event_time.column"),
                            (self.event_time.plus_millis_column, "event_time.plus_millis_column"),
                            (self.event_type.column, "event_type.column")):
            if column:
                refs[column] = key
        return refs


_HINTS = {"timezone": "the IANA zone of times that carry no UTC offset, e.g. 'timezone: UTC'; it is "
                      "required so that local times are never guessed"}


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping; errors name the file, the key and what is allowed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found; see conf/mappings/ for examples") from None
    except yaml.YAMLError as err:
        raise MappingError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise MappingError(f"{path}: expected a mapping of keys (source, format, user_id, ...) at the top level")
    try:
        return Mapping.model_validate(data)
    except ValidationError as err:
        raise MappingError(_describe(path, err)) from None


def _describe(path: Path, err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"] if not str(p).startswith("function-"))
        if problem["type"] == "missing":
            lines.append(f"key '{key}' is required" + (f": {_HINTS[key]}" if key in _HINTS else ""))
        elif problem["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'; allowed: {', '.join(Mapping.model_fields)}"
                         if "." not in key else f"unknown key '{key}'")
        else:
            lines.append(f"key '{key or 'top level'}': {problem['msg'].removeprefix('Value error, ')}")
    return f"{path}: invalid mapping:\n  " + "\n  ".join(lines)
