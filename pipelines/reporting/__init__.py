"""What a person reads after a run: one record collected once (``record``), rendered as the terminal
summary (``summary``) and as the run report, HTML and Markdown, with matplotlib charts (``report``,
``charts``). The ``write_run_report`` stage runs as the DAG's teardown, whatever happened before."""
