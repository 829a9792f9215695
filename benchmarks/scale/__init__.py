"""``make bench-scale``: every stage of the nightly DAG on collector-shaped days of growing size."""
