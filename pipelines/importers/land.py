"""Land an export into the raw zone, one JSON Lines file per day, with its quarantine and reconciliation.

    raw/events/dt=D/import-<source>-<file>.jsonl    rows in the raw schema (what the collector lands)
    <imports_root>/<source>/<file>/quarantine.jsonl  rows that could not be mapped, each with its reason
    <imports_root>/<source>/<file>/reconciliation.json  rows_in = landed + quarantined, per day

Every file is written beside its target and renamed into place only when the whole export has been
read, so a failed import lands nothing. Re-importing the same file replaces its day files (and
removes those of days it no longer has): event ids derive from the file name and line, so the rows
are the same, never doubled. The nightly validation then checks each day as it checks the collector's.
"""

from __future__ import annotations

import os
import re
import statistics
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from pipelines import columns as C
from pipelines import filesystem as fs
from pipelines.importers.convert import DAY, OrderState, convert_chunk
from pipelines.importers.mapping import Mapping
from pipelines.importers.readers import ImportFailed, read_chunks
from pipelines.io import write_json_atomic, write_text_atomic
from pipelines.lake import partition_path

VOLUME_ALERT_FACTOR = 10  # a day with this many times the median day's rows is flagged (not refused)


@dataclass
class ImportResult:
    source: str
    input: str
    rows_in: int = 0  # records read (blank lines and the header excluded) = landed + quarantined
    landed: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)  # day -> rows landed
    files: list[str] = field(default_factory=list)
    removed_stale_files: list[str] = field(default_factory=list)
    volume_alerts: dict[str, float] = field(default_factory=dict)  # day -> rows / median day rows
    quarantine_path: str = ""
    report_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def landed_file_name(source: str, input_path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(input_path).stem).strip("-") or "input"
    return f"import-{source}-{stem}.jsonl"


def import_file(mapping: Mapping, mapping_path: Path, input_path: Path, raw_root: Path,
                imports_root: Path) -> ImportResult:
    """Import ``input_path`` with ``mapping``; see the module doc. Raises ImportFailed, landing nothing."""
    input_path, raw_root = Path(input_path), Path(raw_root)
    if not input_path.is_file():
        raise ImportFailed(f"{input_path}: no such file; pass the export with --input")
    name = landed_file_name(mapping.source, input_path)
    report_dir = Path(imports_root) / mapping.source / name.removesuffix(".jsonl").removeprefix("import-")
    result = ImportResult(source=mapping.source, input=str(input_path),
                          quarantine_path=str(report_dir / "quarantine.jsonl"),
                          report_path=str(report_dir / "reconciliation.json"))
    staged: dict[str, Path] = {}
    try:
        quarantine = _convert_all(mapping, mapping_path, input_path, raw_root, name, staged, result)
        _write_quarantine(Path(result.quarantine_path), quarantine)
        _check_reject_rate(mapping, mapping_path, input_path, result, quarantine)
        _publish(staged, raw_root, name, result)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    result.volume_alerts = _volume_alerts(result.days)
    assert result.rows_in == result.landed + result.quarantined, result
    write_json_atomic(Path(result.report_path), result.to_dict())
    return result


def _convert_all(mapping, mapping_path, input_path, raw_root, name, staged, result) -> pd.DataFrame:
    state, refused = OrderState(per_user={}), []
    for chunk in read_chunks(input_path, mapping, mapping_path):
        converted = convert_chunk(chunk, mapping, input_path.name, state)
        refused.append(converted.quarantine)
        result.rows_in += len(chunk) + len(chunk.malformed)
        result.landed += len(converted.rows)
        for day, rows in converted.rows.groupby(DAY, sort=True):
            if day not in staged:
                folder = partition_path(raw_root, day)
                folder.mkdir(parents=True, exist_ok=True)
                staged[day] = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"  # not *.jsonl: never read half-written
            fs.append_text(staged[day], rows[list(C.RAW_COLUMNS)].to_json(orient="records", lines=True,
                                                                           force_ascii=False))
            result.days[day] = result.days.get(day, 0) + len(rows)
    quarantine = pd.concat(refused, ignore_index=True) if refused else pd.DataFrame()
    result.quarantined = len(quarantine)
    result.reasons = dict(Counter(r for joined in quarantine.get(C.QUARANTINE_REASON, [])
                                  for r in joined.split(";")).most_common())
    result.days = dict(sorted(result.days.items()))
    return quarantine


def _write_quarantine(path: Path, quarantine: pd.DataFrame) -> None:
    write_text_atomic(path, quarantine.to_json(orient="records", lines=True, force_ascii=False)
                      if len(quarantine) else "")


def _check_reject_rate(mapping: Mapping, mapping_path: Path, input_path: Path, result: ImportResult,
                       quarantine: pd.DataFrame) -> None:
    if result.rows_in == 0:
        raise ImportFailed(f"{input_path}: no rows (empty, or only a header); nothing to import")
    rate = result.quarantined / result.rows_in
    if rate <= mapping.max_reject_rate and result.landed:
        return
    examples = "; ".join(
        f"line {row[C.SOURCE_LINE]}" + (f", column {row['column']!r}" if row["column"] else "")
        + (f", value {row['value']!r}" if row["value"] is not None else "") + f": {row[C.QUARANTINE_REASON]} "
        f"({row['detail']})" for row in quarantine.head(3).to_dict("records"))
    raise ImportFailed(
        f"{input_path}: {result.quarantined} of {result.rows_in} rows could not be mapped ({rate:.1%}, above "
        f"max_reject_rate={mapping.max_reject_rate:.1%} of {mapping_path}); nothing was landed. First: {examples}. "
        f"All refused rows, with reasons, are in {result.quarantine_path}; fix the mapping (format, separator, "
        f"columns, event_type.values) or the export and rerun")


def _publish(staged: dict[str, Path], raw_root: Path, name: str, result: ImportResult) -> None:
    for _day, tmp in sorted(staged.items()):
        target = tmp.with_name(name)
        os.replace(tmp, target)
        result.files.append(str(target))
    for old in sorted(raw_root.glob(f"dt=*/{name}")):
        if old.parent.name.removeprefix("dt=") not in staged:
            old.unlink()
            result.removed_stale_files.append(str(old))


def _volume_alerts(days: dict[str, int]) -> dict[str, float]:
    if len(days) < 3:
        return {}
    median = statistics.median(days.values())
    return {day: round(count / median, 1) for day, count in days.items() if count >= VOLUME_ALERT_FACTOR * median}
