"""Bring your own clickstream: land a shop's CSV or JSON Lines export in the raw schema, by day.

A small mapping file (``conf/mappings/*.yaml``, see ``mapping``) says which of the export's columns
is the user, the item, the time and its format, the event type and how its values translate, and so
on. ``import_file`` reads the export in chunks (``readers``), maps each chunk vectorised
(``convert``) and lands ``raw/events/dt=D/import-<source>-<file>.jsonl`` (``land``), with a quarantine
of the rows it cannot map and a reconciliation. The nightly validation then checks those days like any
other. Command line: ``python -m pipelines.importers --mapping M --input FILE``.
"""

from pipelines.importers.land import ImportResult, import_file, landed_file_name
from pipelines.importers.mapping import Mapping, MappingError, load_mapping
from pipelines.importers.readers import ImportFailed

__all__ = ["ImportFailed", "ImportResult", "Mapping", "MappingError", "import_file", "landed_file_name",
           "load_mapping"]
