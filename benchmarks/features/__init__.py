"""``make bench-features``: the Spark feature job against DuckDB SQL on the same generated clickstreams.

- ``generate``: N events, vectorised, straight into the validated layout (Parquet a day);
- ``duckdb_features``: the same core features in DuckDB SQL (dev dependency only);
- ``run``: both on each size in one run, the results compared, the table printed and saved.
"""
