"""The demo shop: a deterministic catalogue and shoppers (``world``), their sessions (``sessions``),
and the collector that lands them as raw JSON Lines days, with its noise (``clickstream``)."""

from pipelines.demo.clickstream import EVENTS_FILE_NAME, generate_demo_clickstream

__all__ = ["EVENTS_FILE_NAME", "generate_demo_clickstream"]
