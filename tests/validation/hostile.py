"""A corpus of hostile raw lines, each with the quarantine reason it must get (None: it must be accepted).

Made by hand from what collectors and exports get wrong: values of the wrong JSON type, sizes no id
has, numbers that are not finite, control characters, broken encodings. ``line(**fields)`` is a
valid event with some fields replaced; the corpus is a list of (name, bytes of the line, reason).
"""

from __future__ import annotations

import json

BASE = {"event_id": "e", "event_time": "2026-11-27T10:00:00Z", "user_id": "u1", "session_id": "s1",
        "event_type": "product_view", "item_id": "i1", "category": "books", "price": 9.5, "device": "web"}


def line(number: int, **fields) -> bytes:
    event = {**BASE, "event_id": f"h{number}", **fields}
    return json.dumps(event, allow_nan=True).encode("utf-8")


CORPUS: list[tuple[str, bytes, str | None]] = [
    ("price NaN (Python's parser takes it)", line(1, price=float("nan")), "price_not_finite"),
    ("price Infinity", line(2, price=float("inf")), "price_not_finite"),
    ("price -Infinity", line(3, price=float("-inf")), "price_not_finite"),
    ("price 1e308", line(4, price=1e308), "price_above_max"),
    ("price as text", line(5, price="twelve"), "price_not_a_number"),
    ("price true", line(6, price=True), "price_not_a_number"),
    ("user_id an object", line(7, user_id={"id": 1}), "user_id_not_text"),
    ("item_id an array", line(8, item_id=["i1"]), "item_id_not_text"),
    ("user_id a float", line(9, user_id=4.5), "user_id_not_text"),
    ("session_id a boolean", line(10, session_id=False), "session_id_not_text"),
    ("user_id an integer: its decimal text", line(11, user_id=1234567890123), None),
    ("event_id of 10,000 characters", line(12, event_id="x" * 10_000), "event_id_too_long"),
    ("user_agent of 1 MB", line(13, user_agent="M" * 1_000_000), "user_agent_too_long"),
    ("NUL inside category", line(14, category="bo\x00oks"), "category_control_characters"),
    ("newline inside item_id", line(15, item_id="i\n1"), "item_id_control_characters"),
    ("event_type with a trailing space", line(16, event_type="purchase "), "unknown_event_type"),
    ("event_type in capitals", line(17, event_type="PURCHASE"), "unknown_event_type"),
    ("event_type a number", line(18, event_type=3), "unknown_event_type"),
    ("event_time a number", line(19, event_time=1764237600), "unparseable_event_time"),
    ("device an object", line(20, device={"os": "ios"}), "device_not_text"),
    ("not UTF-8", b'{"event_id": "h21", "user_id": "\xff\xfe"}', "invalid_utf8"),
    ("a JSON array, not an object", b'["h22", "u1"]', "malformed_json"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
    ("unicode ids are fine", line(24, user_id="ünïcode-Ω", category="Bücher & Co"), None),
    ("price at the maximum", line(25, price=1_000_000), None),
    ("price zero", line(26, price=0), None),
]
