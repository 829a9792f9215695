"""``make bench-validation``: validate_raw_events with and without the raw contract, on one raw day."""
