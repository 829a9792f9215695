"""Column names and allowed values, written down once.

Functions take these as defaulted parameters rather than repeating string literals, so a rename is a
one-line change and a typo is an ``AttributeError`` instead of a silent empty column.
"""

from __future__ import annotations

# Raw events, as a collector lands them (JSON Lines, one partition a day).
EVENT_ID = "event_id"
EVENT_TIME = "event_time"  # ISO-8601 with a UTC offset, e.g. 2026-11-27T13:45:12.123Z
USER_ID = "user_id"
SESSION_ID = "session_id"
EVENT_TYPE = "event_type"
ITEM_ID = "item_id"
CATEGORY = "category"
PRICE = "price"
CAMPAIGN = "campaign"
UTM_SOURCE = "utm_source"
DEVICE = "device"
SEARCH_QUERY = "search_query"
# Personal data: kept in the raw layer only, never written past the feature job.
EMAIL = "email"
IP_ADDRESS = "ip_address"
USER_AGENT = "user_agent"
PERSONAL_DATA_COLUMNS = (EMAIL, IP_ADDRESS, USER_AGENT)

RAW_COLUMNS = (
    EVENT_ID, EVENT_TIME, USER_ID, SESSION_ID, EVENT_TYPE, ITEM_ID, CATEGORY, PRICE,
    CAMPAIGN, UTM_SOURCE, DEVICE, SEARCH_QUERY, EMAIL, IP_ADDRESS, USER_AGENT,
)
REQUIRED_COLUMNS = (EVENT_ID, EVENT_TIME, USER_ID, SESSION_ID, EVENT_TYPE, DEVICE)

# The raw contract, field by field (validation.raw_events_suite turns it into expectations): ids and
# text are JSON strings, or JSON integers taken as their decimal text (objects, arrays, booleans and
# floats are refused), at most validation.max_*_length characters; ids and categories hold no control
# characters; event_time is an ISO-8601 string with an offset; price a finite number in
# 0..validation.max_price; event_type one of EVENT_TYPES exactly.
ID_COLUMNS = (EVENT_ID, USER_ID, SESSION_ID, ITEM_ID)
TEXT_COLUMNS = (EVENT_TYPE, CATEGORY, CAMPAIGN, UTM_SOURCE, DEVICE, SEARCH_QUERY, EMAIL, IP_ADDRESS, USER_AGENT)
NO_CONTROL_CHARACTER_COLUMNS = (*ID_COLUMNS, CATEGORY)
NOT_TEXT_SUFFIX = "__not_text"  # helper column: the field arrived as an object, array, boolean or float

# Event types and which of them carry an item.
PRODUCT_VIEW = "product_view"
ADD_TO_CART = "add_to_cart"
PURCHASE = "purchase"
SEARCH = "search"
AD_IMPRESSION = "ad_impression"
AD_CLICK = "ad_click"
EVENT_TYPES = (PRODUCT_VIEW, ADD_TO_CART, PURCHASE, SEARCH, AD_IMPRESSION, AD_CLICK)
ITEM_EVENT_TYPES = (PRODUCT_VIEW, ADD_TO_CART, PURCHASE, AD_IMPRESSION, AD_CLICK)

# Quarantine: the original fields plus why the row was refused.
QUARANTINE_REASON = "quarantine_reason"
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"  # 1-based line number in the source file
RAW_LINE = "raw_line"  # the line as it arrived, so nothing is lost

# Features written by the Spark job.
USER_KEY = "user_key"  # keyed hash (HMAC-SHA256) of user_id; the raw id never leaves the raw layer
USER_BUCKET = "user_bucket"  # stable small integer derived from user_key, for user embeddings
ITEM_IDX = "item_idx"  # stable integer id of an item, 1-based; 0 is padding
ITEM_SEQ = "item_seq"  # chronological item_idx sequence of a user over the trailing window
PURCHASED_ITEMS = "purchased_items"  # item_idx the user bought in the window (excluded when scoring)
FIRST_SEEN_DT = "first_seen_dt"
N_EVENTS = "n_events"
N_USERS = "n_users"
SESSION_KEY = "session_key"

# Outputs.
RANK = "rank"
SCORE = "score"
MODEL_VERSION = "model_version"
