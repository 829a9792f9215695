"""Benchmarks, run from the repository root (``python -m benchmarks.<group>.<script>``), never by the DAG.

- ``features``: ``make bench-features``, the Spark feature job against DuckDB SQL on the same data;
- ``models``: ``make reproduce`` (the SASRec paper's protocol) and ``make bench-models`` / ``bench-gpu``
  (one training epoch of each model, side by side).
"""
