"""``python -m pipelines.importers --mapping conf/mappings/rees46.yaml --input events.csv``

Lands the export under the configured raw zone (or ``--raw-root``) and prints the reconciliation:
rows in = landed + quarantined, the days written and where the refused rows are. Exit 1 when the
export does not fit its mapping, 2 when the mapping itself is wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.importers import ImportFailed, MappingError, import_file, load_mapping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.importers", description=__doc__.splitlines()[0])
    parser.add_argument("--mapping", type=Path, required=True, help="mapping file, e.g. conf/mappings/rees46.yaml")
    parser.add_argument("--input", type=Path, required=True, help="the export: CSV or JSON Lines")
    parser.add_argument("--raw-root", type=Path, help="raw events root (default: the config's raw/events)")
    parser.add_argument("--imports-root", type=Path, help="quarantine and reconciliation root "
                                                          "(default: <lake>/imports)")
    args = parser.parse_args(argv)
    raw_root, imports_root = args.raw_root, args.imports_root
    if raw_root is None or imports_root is None:
        from pipelines.config import load_config

        layout = load_config().layout
        raw_root = raw_root or layout.raw_events
        imports_root = imports_root or layout.imports
    try:
        mapping = load_mapping(args.mapping)
        result = import_file(mapping, args.mapping, args.input, raw_root, imports_root)
    except MappingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_result(result))
    return 0


def format_result(result) -> str:
    days = list(result.days)
    lines = [f"import {result.source}: {result.input}",
             f"  rows in {result.rows_in} = landed {result.landed} + quarantined {result.quarantined}",
             f"  days {len(days)}" + (f" ({days[0]} .. {days[-1]})" if days else ""),
             f"  landed under {Path(result.files[0]).parent.parent if result.files else '-'}"]
    if result.reasons:
        lines.append("  quarantine reasons: " + ", ".join(f"{k}={v}" for k, v in result.reasons.items()))
    if result.volume_alerts:
        lines.append("  volume alerts (x median day): " + ", ".join(f"{d}={r}" for d, r in result.volume_alerts.items()))
    if result.removed_stale_files:
        lines.append(f"  removed {len(result.removed_stale_files)} day file(s) of an earlier import of this file")
    lines += [f"  quarantine: {result.quarantine_path}", f"  reconciliation: {result.report_path}",
              "  next: make run-imported DS=<one of the days> (validates the window, runs the DAG)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
