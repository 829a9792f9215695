"""The lasting part of the demo clickstream: a catalog with item-to-item structure, and its users.

Everything here is a pure function of the seed, so every day of the demo sees the same shop and the
same people. The structure is what a sequence model can learn and a popularity baseline cannot:

* items belong to categories and have Zipf-like popularity inside their category;
* every item has a few "next" items (the next volume of its series, an accessory from a
  complementary category, a similar item) that sessions follow with high probability;
* users keep 1-3 interests, an activity level (heavy users come back most days), a device, and
  a position in their favourite category's series that advances day by day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (category, complementary category whose items are bought alongside, median price)
CATEGORIES = (
    ("consoles", "games", 349.0),
    ("games", "accessories", 49.0),
    ("accessories", "consoles", 24.0),
    ("books", "books", 14.0),
    ("comics", "books", 9.0),
    ("headphones", "phones", 79.0),
    ("phones", "headphones", 499.0),
    ("cameras", "photo_gear", 599.0),
    ("photo_gear", "cameras", 39.0),
    ("kitchen", "home", 59.0),
    ("home", "kitchen", 35.0),
    ("toys", "books", 29.0),
)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARES = (0.55, 0.35, 0.10)
USER_AGENTS = {
    "mobile": ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148 Safari/604.1",
               "Mozilla/5.0 (Linux; Android 15; Pixel 9) Chrome/131.0 Mobile Safari/537.36"),
    "desktop": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Version/18.1 Safari/605.1.15"),
    "tablet": ("Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) Mobile/15E148 Safari/604.1",),
}
FIRST_NAMES = ("ada", "ben", "chloe", "dev", "elif", "farah", "gus", "hana", "ivan", "jo", "kemal", "lena")
LAST_NAMES = ("smith", "garcia", "kowalski", "nguyen", "okafor", "rossi", "schmidt", "tanaka", "weber")
N_NEXT_ITEMS = 3  # next volume, complementary item, similar item
LOGGED_IN_SHARE = 0.6
ZIPF_EXPONENT = 1.1


@dataclass(frozen=True)
class DemoCatalog:
    """Items are stored in category blocks: items of category c are ``block_start[c]:block_end[c]``."""

    item_ids: np.ndarray  # (n_items,) str
    item_category: np.ndarray  # (n_items,) int index into CATEGORIES
    price: np.ndarray  # (n_items,) float, > 0
    next_items: np.ndarray  # (n_items, N_NEXT_ITEMS) int item index
    block_start: np.ndarray  # (n_categories,) int
    block_size: np.ndarray  # (n_categories,) int
    category_cdf: np.ndarray  # (n_items,) category index + cumulative popularity inside the category
    global_popularity: np.ndarray  # (n_items,) float, sums to 1


@dataclass(frozen=True)
class DemoUsers:
    user_ids: np.ndarray  # (n_users,) str
    interests: np.ndarray  # (n_users, 3) int category index; column 0 is the favourite
    interest_cdf: np.ndarray  # (n_users, 3) cumulative interest weights, last column 1.0
    activity: np.ndarray  # (n_users,) float, sums to 1: who starts today's sessions
    device: np.ndarray  # (n_users,) int index into DEVICES
    email: list  # (n_users,) str or None for users who never log in
    ip_address: list  # (n_users,) str
    user_agent: list  # (n_users,) str
    series_offset: np.ndarray  # (n_users,) int start position in the favourite category's series
    series_pace: np.ndarray  # (n_users,) int items the user moves along the series per day


def sample_popular_items(catalog: DemoCatalog, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one item per entry of ``categories``, by popularity inside that category."""
    targets = categories + rng.random(len(categories))
    picked = np.searchsorted(catalog.category_cdf, targets, side="right")
    last_of_block = catalog.block_start[categories] + catalog.block_size[categories] - 1
    return np.minimum(picked, last_of_block)


def build_catalog(n_items: int, seed: int) -> DemoCatalog:
    """A catalog of ``n_items`` items over CATEGORIES with Zipf-like popularity and next items."""
    n_categories = len(CATEGORIES)
    if n_items < 2 * n_categories:
        raise ValueError(f"n_items={n_items}: the demo needs at least {2 * n_categories} items "
                         f"(two per category); pass a larger n_items")
    rng = np.random.default_rng([seed, 1])
    block_size = _split_into_blocks(n_items, n_categories, rng)
    block_start = np.concatenate([[0], np.cumsum(block_size)[:-1]])
    item_category = np.repeat(np.arange(n_categories), block_size)
    within = _zipf_weights(block_size, rng)
    category_weight = rng.dirichlet(np.full(n_categories, 4.0))
    medians = np.array([median for _, _, median in CATEGORIES])
    price = np.round(medians[item_category] * rng.lognormal(0.0, 0.45, n_items), 2).clip(min=0.99)
    catalog = DemoCatalog(
        item_ids=np.array([f"I{number:05d}" for number in rng.permutation(n_items) + 1]),
        item_category=item_category, price=price,
        next_items=np.zeros((n_items, N_NEXT_ITEMS), dtype=np.int64),
        block_start=block_start, block_size=block_size,
        category_cdf=item_category + _cumsum_within_blocks(within, block_start, block_size),
        global_popularity=_global_popularity(within, block_start, item_category, category_weight),
    )
    catalog.next_items[:] = _link_next_items(catalog, rng)
    return catalog


def _split_into_blocks(n_items: int, n_categories: int, rng: np.random.Generator) -> np.ndarray:
    shares = rng.dirichlet(np.full(n_categories, 5.0))
    sizes = np.maximum(2, np.floor(shares * n_items).astype(np.int64))
    sizes[np.argmax(sizes)] += n_items - sizes.sum()  # the rounding remainder goes to the largest
    return sizes


def _zipf_weights(block_size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per item, 1/rank^s inside its category, with ranks shuffled so ids don't give them away."""
    ranks = np.concatenate([rng.permutation(size) + 1 for size in block_size])
    return 1.0 / ranks.astype(float) ** ZIPF_EXPONENT


def _cumsum_within_blocks(weights: np.ndarray, block_start: np.ndarray, block_size: np.ndarray) -> np.ndarray:
    cdf = np.empty_like(weights)
    for start, size in zip(block_start, block_size, strict=True):
        block = np.cumsum(weights[start:start + size])
        cdf[start:start + size] = block / block[-1]
    return cdf


def _global_popularity(within: np.ndarray, block_start: np.ndarray, item_category: np.ndarray,
                       category_weight: np.ndarray) -> np.ndarray:
    share_in_category = within / np.add.reduceat(within, block_start)[item_category]
    popularity = share_in_category * category_weight[item_category]
    return popularity / popularity.sum()


def _link_next_items(catalog: DemoCatalog, rng: np.random.Generator) -> np.ndarray:
    """Next volume of the series (the following item of the block), a complement, a similar item."""
    n_items = len(catalog.item_category)
    index_of = {name: index for index, (name, _, _) in enumerate(CATEGORIES)}
    complement_of = np.array([index_of[complement] for _, complement, _ in CATEGORIES])
    start = catalog.block_start[catalog.item_category]
    size = catalog.block_size[catalog.item_category]
    next_volume = start + (np.arange(n_items) - start + 1) % size
    complement = sample_popular_items(catalog, complement_of[catalog.item_category], rng)
    similar = sample_popular_items(catalog, catalog.item_category, rng)
    return np.stack([next_volume, complement, similar], axis=1)


def build_users(n_users: int, catalog: DemoCatalog, seed: int) -> DemoUsers:
    """``n_users`` users with lasting interests, activity levels, devices and personal data."""
    if n_users < 1:
        raise ValueError(f"n_users={n_users}: the demo needs at least one user; pass n_users >= 1")
    rng = np.random.default_rng([seed, 2])
    n_categories = len(CATEGORIES)
    interests = np.argsort(rng.random((n_users, n_categories)), axis=1)[:, :3]
    weights = rng.dirichlet(np.ones(3) * 0.7, n_users) + np.array([1.0, 0.0, 0.0])  # favourite first
    n_interests = rng.choice([1, 2, 3], n_users, p=[0.4, 0.4, 0.2])
    weights[np.arange(3)[None, :] >= n_interests[:, None]] = 0.0
    interest_cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    interest_cdf[:, -1] = 1.0
    activity = rng.lognormal(0.0, 1.2, n_users)
    device = rng.choice(len(DEVICES), n_users, p=DEVICE_SHARES)
    email = _emails(n_users, rng)
    return DemoUsers(
        # Shoppers with an account (and an email) are customers; the others are anonymous visitors,
        # known only by a cookie id, whom publishing never sends to the CRM tools.
        user_ids=np.array([f"U{number:06d}" if address else f"anon-{number:06d}"
                           for number, address in enumerate(email, start=1)]),
        interests=interests, interest_cdf=interest_cdf, activity=activity / activity.sum(),
        device=device, email=email, ip_address=_ip_addresses(n_users, rng),
        user_agent=[_pick(USER_AGENTS[DEVICES[d]], rng) for d in device],
        series_offset=rng.integers(0, catalog.block_size.max(), n_users),
        series_pace=rng.choice([1, 2], n_users, p=[0.7, 0.3]),
    )


def _emails(n_users: int, rng: np.random.Generator) -> list:
    first = rng.choice(FIRST_NAMES, n_users)
    last = rng.choice(LAST_NAMES, n_users)
    logged_in = rng.random(n_users) < LOGGED_IN_SHARE
    return [f"{f}.{s}{n}@example.com" if on else None
            for n, (f, s, on) in enumerate(zip(first, last, logged_in, strict=True), start=1)]


def _ip_addresses(n_users: int, rng: np.random.Generator) -> list:
    octets = rng.integers(1, 255, (n_users, 3))
    return [f"10.{a}.{b}.{c}" for a, b, c in octets.tolist()]


def _pick(options: tuple, rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]
