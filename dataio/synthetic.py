"""A generated e-commerce dataset: a second shape for the adapters, the model build and the evaluation.

    python -m dataio.synthetic --out .cache/data/ecommerce [--items 20000 --categories 150
        --users 5000 --events 300000 --seed 7]

writes ``interactions.jsonl.gz`` and ``items.jsonl`` in ``dataio.files.FileAdapter``'s format, plus
``generator.json`` (the parameters and counts). The output is a function of the parameters alone
(byte-identical files for a seed; the gzip header carries no time or name).

The catalog: hierarchical category names ("Home > Kitchen > Knives") from a fixed taxonomy, category
sizes Zipf-like; 1–3 categories per item (extra ones mostly siblings in the taxonomy); brands Zipf
within a department; prices log-normal around a per-category level with a brand premium; ``created_at``
spread over two years before the event window and, for ~15% "new" items, inside it (an item is never
seen before it exists); ~3% unavailable.

The users: activity is heavy-tailed; each user has three favourite categories (weights drawn per user)
seeded by a home department, and at each new session one favourite is replaced with probability 0.15,
mostly by a taxonomy neighbour of the one it replaces: interests drift. A session starts in one
favourite and browses: the next view is a co-viewed neighbour of the previous item (same category,
close in price) half of the time, a popular item of the session's current category otherwise, now and
then a switch to another favourite or a popular item anywhere. So the next item depends on the recent
items and their categories, which a sequence model can learn and most-popular cannot.

Each view may lead to a click (30% inside the user's current favourites, 12% outside), a click to an
add-to-cart (~12%, more for cheaper items; value = quantity), an add-to-cart to a purchase (50%; value =
price × quantity). Events are written in time order, exactly ``events`` of them (the earliest).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "data" / "ecommerce"
INTERACTIONS_FILE = "interactions.jsonl.gz"
ITEMS_FILE = "items.jsonl"
GENERATOR_FILE = "generator.json"
GENERATOR_VERSION = 3  # bump whenever the same Config gives other output (ensure() regenerates)
DAY_MS = 86_400_000

# Departments > groups > leaves. Category k of a run is taken round-robin over departments, then
# groups, so any prefix of the list spreads over the whole store.
TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {
    "Home": {
        "Kitchen": ("Knives", "Cookware", "Cutting Boards", "Coffee Makers"),
        "Bedding": ("Sheets", "Pillows", "Duvets", "Blankets"),
        "Decor": ("Candles", "Frames", "Vases", "Clocks"),
    },
    "Electronics": {
        "Audio": ("Headphones", "Speakers", "Earbuds", "Soundbars"),
        "Computers": ("Laptops", "Monitors", "Keyboards", "Mice"),
        "Phones": ("Cases", "Chargers", "Screen Protectors", "Smartphones"),
    },
    "Fashion": {
        "Women": ("Dresses", "Tops", "Skirts", "Handbags"),
        "Men": ("Shirts", "Jeans", "Jackets", "Wallets"),
        "Shoes": ("Sneakers", "Boots", "Sandals", "Running Shoes"),
    },
    "Sports": {
        "Fitness": ("Yoga Mats", "Dumbbells", "Resistance Bands", "Kettlebells"),
        "Outdoor": ("Tents", "Backpacks", "Sleeping Bags", "Headlamps"),
        "Cycling": ("Helmets", "Bike Lights", "Saddles", "Jerseys"),
    },
    "Beauty": {
        "Skincare": ("Cleansers", "Moisturizers", "Serums", "Sunscreen"),
        "Makeup": ("Lipstick", "Mascara", "Foundation", "Eyeshadow"),
        "Hair": ("Shampoo", "Conditioner", "Hair Dryers", "Brushes"),
    },
    "Toys": {
        "Building": ("Blocks", "Construction Sets", "Marble Runs", "Magnetic Tiles"),
        "Games": ("Board Games", "Puzzles", "Card Games", "Party Games"),
        "Outdoor Play": ("Scooters", "Water Guns", "Kites", "Swings"),
    },
    "Books": {
        "Fiction": ("Mystery", "Fantasy", "Romance", "Thrillers"),
        "Nonfiction": ("Biography", "History", "Science", "Self-Help"),
        "Kids": ("Picture Books", "Early Readers", "Activity Books", "Comics"),
    },
    "Garden": {
        "Tools": ("Pruners", "Shovels", "Hoses", "Gloves"),
        "Plants": ("Seeds", "Bulbs", "Succulents", "Herbs"),
        "Furniture": ("Chairs", "Tables", "Umbrellas", "Hammocks"),
    },
    "Automotive": {
        "Care": ("Wax", "Microfiber Cloths", "Pressure Washers", "Vacuums"),
        "Accessories": ("Phone Mounts", "Seat Covers", "Floor Mats", "Dash Cams"),
        "Parts": ("Wipers", "Bulbs", "Filters", "Batteries"),
    },
    "Grocery": {
        "Pantry": ("Pasta", "Rice", "Olive Oil", "Spices"),
        "Snacks": ("Chips", "Nuts", "Chocolate", "Cookies"),
        "Beverages": ("Coffee", "Tea", "Juice", "Sparkling Water"),
    },
    "Health": {
        "Vitamins": ("Multivitamins", "Vitamin D", "Omega-3", "Probiotics"),
        "Personal Care": ("Toothbrushes", "Razors", "Deodorant", "Body Wash"),
        "Medical": ("Thermometers", "First Aid", "Blood Pressure Monitors", "Braces"),
    },
    "Office": {
        "Supplies": ("Pens", "Notebooks", "Staplers", "Sticky Notes"),
        "Furniture": ("Desks", "Office Chairs", "Bookcases", "Filing Cabinets"),
        "Tech": ("Printers", "Shredders", "Webcams", "Label Makers"),
    },
    "Pets": {
        "Dogs": ("Dog Food", "Leashes", "Dog Beds", "Chew Toys"),
        "Cats": ("Cat Food", "Litter", "Scratchers", "Cat Toys"),
        "Aquarium": ("Tanks", "Fish Food", "Aquarium Filters", "Heaters"),
    },
    "Baby": {
        "Feeding": ("Bottles", "High Chairs", "Bibs", "Formula"),
        "Nursery": ("Cribs", "Baby Monitors", "Mobiles", "Changing Pads"),
        "Travel": ("Strollers", "Car Seats", "Carriers", "Diaper Bags"),
    },
    "Tools": {
        "Power Tools": ("Drills", "Saws", "Sanders", "Impact Drivers"),
        "Hand Tools": ("Hammers", "Screwdrivers", "Wrenches", "Pliers"),
        "Storage": ("Tool Boxes", "Tool Bags", "Workbenches", "Shelving"),
    },
    "Music": {
        "Instruments": ("Guitars", "Keyboards", "Drums", "Ukuleles"),
        "Studio": ("Microphones", "Audio Interfaces", "Studio Monitors", "Cables"),
        "Accessories": ("Strings", "Picks", "Stands", "Tuners"),
    },
}
# Brand names are made of a head and a tail ("Cedarforge"); none is meant to be a real brand.
_BRAND_HEADS = str.split(
    "Acme Alto Arc Aster Bolt Brio Cedar Cobalt Coral Crest Delta Echo Ember Fable Fern Flint Glen Halo "
    "Harbor Iris Juno Kite Lark Lumen Maple Mesa Nimbus Nova Oak Onyx Orbit Pine Pulse Quill Rune Sage "
    "Sol Summit Tide Vale Vega Willow Zen Zephyr"
)
_BRAND_TAILS = str.split(
    "works labs co craft line wave forge home gear goods mart ware point field stone form ridge"
)

# Behaviour. Probabilities per view step inside a session (they sum below 1: the rest explores).
MEAN_SESSION_VIEWS = 8
MAX_SESSION_VIEWS = 60
NEIGHBOURS = 8  # co-viewed items per item: same primary category, nearest in price
P_NEIGHBOUR = 0.50
P_SAME_CATEGORY = 0.35
P_SWITCH_FAVOURITE = 0.08
P_DRIFT = 0.15  # per session: one favourite category is replaced
P_CLICK_IN_INTEREST, P_CLICK_OUTSIDE = 0.30, 0.12
P_CART_GIVEN_CLICK = 0.12
P_PURCHASE_GIVEN_CART = 0.50
NEW_ITEM_SHARE = 0.15
UNAVAILABLE_SHARE = 0.03
POPULARITY_SIGMA = 1.3  # log-normal item appeal: the top 1% of items draw ~11% of the views


@dataclass(frozen=True)
class Config:
    """What to generate; the output is a function of these alone."""

    items: int = 20_000
    categories: int = 150
    users: int = 5_000
    events: int = 300_000
    seed: int = 7
    start_ms: int = 1_756_684_800_000  # 2025-09-01T00:00:00Z, the first day of the event window
    days: int = 91

    def __post_init__(self) -> None:
        for name in ("items", "categories", "users", "events", "days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.categories > self.items:
            raise ValueError("categories must not exceed items (every category holds an item)")

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


def category_names(count: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``count`` category paths, their department index and their (department, group) index.

    Taken round-robin over departments, and inside a department one leaf of each group in turn, so
    any prefix of the list spreads over the whole store; past the taxonomy's size, names get a number.
    """
    departments = list(TAXONOMY.items())
    ordered: list[tuple[int, int, str]] = []
    for rank in range(max(sum(len(leaves) for leaves in groups.values()) for _, groups in departments)):
        for d, (department, groups) in enumerate(departments):
            group_names = list(groups)
            g = rank % len(group_names)
            leaves = groups[group_names[g]]
            if rank // len(group_names) < len(leaves):
                ordered.append(
                    (d, g, f"{department} > {group_names[g]} > {leaves[rank // len(group_names)]}")
                )
    names, department_of, group_of = [], [], []
    for i in range(count):
        d, g, name = ordered[i % len(ordered)]
        names.append(name if i < len(ordered) else f"{name} {i // len(ordered) + 1}")
        department_of.append(d)
        group_of.append(d * 100 + g)
    return names, np.asarray(department_of), np.unique(group_of, return_inverse=True)[1]


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights over ``n`` entries in a random order, summing to 1."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    weights = weights[rng.permutation(n)]
    return weights / weights.sum()


def _pick_in_groups(
    members: np.ndarray, starts: np.ndarray, counts: np.ndarray, group: np.ndarray, u: np.ndarray
):
    """A uniformly chosen member of each row's group (CSR layout: members[starts[g]:starts[g]+counts[g]])."""
    return members[starts[group] + np.minimum((u * counts[group]).astype(np.int64), counts[group] - 1)]


def _csr(keys: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    members = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=groups)
    return members, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts


class _TimedSampler:
    """Draws items of a group by weight among those that exist at a given time, vectorised.

    Rows are (group, item) pairs sorted by (group, created_at); ``cum`` holds the running weight, so
    the items of group g created at or before t are one contiguous range whose weight is a difference.
    """

    def __init__(self, groups: np.ndarray, items: np.ndarray, created: np.ndarray, weights: np.ndarray):
        self._base = int(created.min())
        self._scale = int(created.max()) - self._base + 2
        keys = groups.astype(np.int64) * self._scale + (created[items] - self._base)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._items = items[order]
        self._cum = np.concatenate([[0.0], np.cumsum(weights[items][order])])
        self._starts = np.searchsorted(self._keys, np.arange(int(groups.max()) + 2) * self._scale)

    def draw(self, groups: np.ndarray, at_ms: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per row (weighted), or -1 where the group has no item yet at that time."""
        lo = self._starts[groups]
        moment = np.clip(at_ms - self._base, -1, self._scale - 1)
        hi = np.searchsorted(self._keys, groups.astype(np.int64) * self._scale + moment, side="right")
        target = self._cum[lo] + u * (self._cum[hi] - self._cum[lo])
        row = np.clip(np.searchsorted(self._cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo))
        return np.where(hi > lo, self._items[np.minimum(row, len(self._items) - 1)], -1)


@dataclass
class _Catalog:
    names: list[str]
    department: np.ndarray  # per category
    group: np.ndarray  # per category
    category_weight: np.ndarray
    item_ids: list[str]
    categories: list[list[int]]  # per item, primary first
    primary: np.ndarray
    brand_names: list[str]
    brand: np.ndarray
    price: np.ndarray
    created_at: np.ndarray
    available: np.ndarray
    weight: np.ndarray
    model_codes: np.ndarray
    neighbours: np.ndarray  # [items, NEIGHBOURS]


def _brand_names(count: int, rng: np.random.Generator) -> list[str]:
    combos = [f"{head}{tail}" for head in _BRAND_HEADS for tail in _BRAND_TAILS]
    picked = [combos[i] for i in rng.permutation(len(combos))]
    return [
        picked[i % len(picked)] + ("" if i < len(picked) else f" {i // len(picked) + 1}")
        for i in range(count)
    ]


def _make_catalog(config: Config, rng: np.random.Generator) -> _Catalog:
    names, department, group = category_names(config.categories)
    n, c = config.items, config.categories
    departments = int(department.max()) + 1
    category_weight = _zipf_weights(c, 0.9, rng)
    primary = np.concatenate([rng.permutation(c), rng.choice(c, size=n - c, p=category_weight)])
    shuffle = rng.permutation(n)
    primary = primary[shuffle]
    first_of_category = np.argsort(shuffle)[:c]  # one item per category, made before the window below

    # Extra categories: a sibling in the taxonomy group (70%), the department (20%) or anywhere (10%).
    extra_count = rng.choice(3, size=n, p=[0.55, 0.33, 0.12])
    by_group = _csr(group, int(group.max()) + 1)
    by_department = _csr(department, departments)
    extras = []
    for _ in range(2):
        kind, u = rng.random(n), rng.random(n)
        sibling = _pick_in_groups(*by_group, group[primary], u)
        same_department = _pick_in_groups(*by_department, department[primary], u)
        anywhere = rng.choice(c, size=n, p=category_weight)
        extras.append(np.where(kind < 0.7, sibling, np.where(kind < 0.9, same_department, anywhere)))
    categories = []
    for i in range(n):
        chosen = [int(primary[i])] + [int(extras[j][i]) for j in range(int(extra_count[i]))]
        categories.append(list(dict.fromkeys(chosen)))

    # Brands: a department's own brands, Zipf-distributed.
    per_department = max(5, math.ceil(n / 40 / departments))
    brand_rank = rng.choice(per_department, size=n, p=_zipf_weights(per_department, 1.1, rng))
    brand = department[primary] * per_department + brand_rank
    brand_names = _brand_names(departments * per_department, rng)
    brand_popularity = np.bincount(brand, minlength=len(brand_names)) + 1.0

    level = rng.normal(math.log(25.0), 0.8, size=c)
    premium = rng.normal(0.0, 0.25, size=len(brand_names))
    raw_price = np.exp(level[primary] + premium[brand] + rng.normal(0.0, 0.35, size=n))
    price = np.round(np.floor(raw_price) + 0.99, 2)

    new = rng.random(n) < NEW_ITEM_SHARE
    new[first_of_category] = False  # so every category has an item from the window's first moment
    created_at = np.where(
        new,
        config.start_ms + (rng.random(n) * config.days * DAY_MS),
        config.start_ms - rng.random(n) * 730 * DAY_MS,
    ).astype(np.int64)
    available = rng.random(n) >= UNAVAILABLE_SHARE
    weight = rng.lognormal(0.0, POPULARITY_SIGMA, size=n) * np.sqrt(
        brand_popularity[brand] / brand_popularity.mean()
    )
    weight *= np.where(new, 1.5, 1.0) * np.where(available, 1.0, 0.3)

    # Co-viewed neighbours: the items next to it in its primary category, ordered by price.
    order = np.lexsort((price, primary))
    counts = np.bincount(primary, minlength=c)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - starts[primary[order]]
    offsets = np.array([o for k in range(1, NEIGHBOURS // 2 + 1) for o in (-k, k)])
    size = counts[primary][:, None]
    neighbours = order[starts[primary][:, None] + (position[:, None] + offsets[None, :]) % size]

    width = len(str(n))
    return _Catalog(
        names=names,
        department=department,
        group=group,
        category_weight=category_weight,
        item_ids=[f"p{i + 1:0{width}d}" for i in range(n)],
        categories=categories,
        primary=primary,
        brand_names=brand_names,
        brand=brand,
        price=price,
        created_at=created_at,
        available=available,
        weight=weight,
        model_codes=rng.integers(100, 1000, size=n),
        neighbours=neighbours,
    )


def item_records(catalog: _Catalog) -> list[dict[str, Any]]:
    """The items in the FileAdapter's JSONL form."""
    records = []
    for i, item_id in enumerate(catalog.item_ids):
        leaf = catalog.names[catalog.primary[i]].rsplit(" > ", 1)[-1]
        brand = catalog.brand_names[catalog.brand[i]]
        records.append(
            {
                "item_id": item_id,
                "categories": [catalog.names[k] for k in catalog.categories[i]],
                "title": f"{brand} {leaf} {chr(65 + i % 26)}{catalog.model_codes[i]}",
                "attributes": {"brand": brand, "price": float(catalog.price[i])},
                "available": bool(catalog.available[i]),
                "created_at": int(catalog.created_at[i]),
            }
        )
    return records


@dataclass
class _Sessions:
    user: np.ndarray  # per session
    start_ms: np.ndarray
    length: np.ndarray
    favourites: np.ndarray  # [sessions, 3] the user's favourite categories during the session
    favourite_weight: np.ndarray  # [sessions, 3]


def _make_sessions(config: Config, catalog: _Catalog, count: int, rng: np.random.Generator) -> _Sessions:
    users, c = config.users, config.categories
    activity = rng.lognormal(0.0, 1.0, size=users)
    if count > users:
        per_user = 1 + rng.multinomial(count - users, activity / activity.sum())
    else:
        per_user = rng.multinomial(count, activity / activity.sum())
    user = np.repeat(np.arange(users), per_user)
    sessions = len(user)

    window = config.days * DAY_MS
    joined = np.where(rng.random(users) < 0.65, 0.0, rng.random(users) * (window - DAY_MS))
    offset = joined[user] + rng.random(sessions) * (window - joined[user])
    order = np.lexsort((offset, user))
    user, start_ms = user[order], (config.start_ms + offset[order]).astype(np.int64)
    length = np.minimum(rng.geometric(1.0 / MEAN_SESSION_VIEWS, size=sessions), MAX_SESSION_VIEWS)

    # Initial favourites: two from a home department (weighted), one from anywhere.
    departments = int(catalog.department.max()) + 1
    department_weight = np.bincount(
        catalog.department, weights=catalog.category_weight, minlength=departments
    )
    home = rng.choice(departments, size=users, p=department_weight / department_weight.sum())
    in_department = _TimedSampler(
        catalog.department, np.arange(c), np.zeros(c, dtype=np.int64), catalog.category_weight
    )
    favourites = np.stack(
        [
            in_department.draw(home, np.zeros(users, dtype=np.int64), rng.random(users)),
            in_department.draw(home, np.zeros(users, dtype=np.int64), rng.random(users)),
            rng.choice(c, size=users, p=catalog.category_weight),
        ],
        axis=1,
    )
    weights = rng.dirichlet([4.0, 2.0, 1.0], size=users)

    # Drift, session by session: one favourite replaced, mostly by a taxonomy neighbour of it.
    by_group = _csr(catalog.group, int(catalog.group.max()) + 1)
    by_department = _csr(catalog.department, departments)
    drift = rng.random(sessions) < P_DRIFT
    slot = rng.integers(0, 3, size=sessions)
    kind = rng.random(sessions)
    u = rng.random(sessions)
    anywhere = rng.choice(c, size=sessions, p=catalog.category_weight)
    session_favourites = np.empty((sessions, 3), dtype=np.int64)
    current = favourites[0].copy()
    for s in range(sessions):
        if s == 0 or user[s] != user[s - 1]:
            current = favourites[user[s]].copy()
        elif drift[s]:
            old = np.array([current[slot[s]]])
            if kind[s] < 0.5:
                new = _pick_in_groups(*by_group, catalog.group[old], u[s : s + 1])[0]
            elif kind[s] < 0.8:
                new = _pick_in_groups(*by_department, catalog.department[old], u[s : s + 1])[0]
            else:
                new = anywhere[s]
            current[slot[s]] = new
        session_favourites[s] = current
    return _Sessions(user, start_ms, length, session_favourites, weights[user])


def _choose_slot(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum((np.cumsum(weights, axis=1) < u[:, None]).sum(axis=1), 2)


def _browse(catalog: _Catalog, sessions: _Sessions, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Views of every session, step by step across all sessions at once: (session, item, time)."""
    n_sessions = len(sessions.user)
    memberships = np.array([(k, i) for i, cats in enumerate(catalog.categories) for k in cats])
    by_category = _TimedSampler(memberships[:, 0], memberships[:, 1], catalog.created_at, catalog.weight)
    anywhere = _TimedSampler(
        np.zeros(len(catalog.item_ids), dtype=np.int64),
        np.arange(len(catalog.item_ids)),
        catalog.created_at,
        catalog.weight,
    )
    offsets = np.concatenate([[0], np.cumsum(sessions.length)])
    total = int(offsets[-1])
    view_session = np.repeat(np.arange(n_sessions), sessions.length)
    view_item = np.empty(total, dtype=np.int64)
    view_time = np.empty(total, dtype=np.int64)

    slot = _choose_slot(sessions.favourite_weight, rng.random(n_sessions))
    category = sessions.favourites[np.arange(n_sessions), slot]
    clock = sessions.start_ms.copy()
    previous = np.full(n_sessions, -1, dtype=np.int64)

    def popular(rows: np.ndarray, cats: np.ndarray) -> np.ndarray:
        picked = by_category.draw(cats, clock[rows], rng.random(len(rows)))
        missing = picked < 0
        if missing.any():
            fallback = anywhere.draw(
                np.zeros(missing.sum(), dtype=np.int64), clock[rows][missing], rng.random(missing.sum())
            )
            picked[missing] = fallback
        return picked

    for step in range(int(sessions.length.max())):
        active = np.flatnonzero(sessions.length > step)
        if step == 0:
            chosen = popular(active, category[active])
        else:
            r = rng.random(len(active))
            chosen = np.full(len(active), -1, dtype=np.int64)
            neighbour = catalog.neighbours[previous[active], rng.integers(0, NEIGHBOURS, size=len(active))]
            use_neighbour = (r < P_NEIGHBOUR) & (catalog.created_at[neighbour] <= clock[active])
            chosen[use_neighbour] = neighbour[use_neighbour]
            switch = (r >= P_NEIGHBOUR + P_SAME_CATEGORY) & (
                r < P_NEIGHBOUR + P_SAME_CATEGORY + P_SWITCH_FAVOURITE
            )
            if switch.any():
                rows = active[switch]
                new_slot = _choose_slot(sessions.favourite_weight[rows], rng.random(len(rows)))
                category[rows] = sessions.favourites[rows, new_slot]
            explore = r >= P_NEIGHBOUR + P_SAME_CATEGORY + P_SWITCH_FAVOURITE
            if explore.any():
                chosen[explore] = anywhere.draw(
                    np.zeros(explore.sum(), dtype=np.int64), clock[active[explore]], rng.random(explore.sum())
                )
            rest = chosen < 0
            chosen[rest] = popular(active[rest], category[active[rest]])
        view_item[offsets[active] + step] = chosen
        view_time[offsets[active] + step] = clock[active]
        previous[active] = chosen
        clock[active] += (5_000 + rng.exponential(35_000, size=len(active))).astype(np.int64)
    return view_session, view_item, view_time


def _funnel(catalog: _Catalog, sessions: _Sessions, views: tuple[np.ndarray, ...], rng: np.random.Generator):
    """Clicks, add-to-carts and purchases after the views; every event as columns, unsorted."""
    view_session, view_item, view_time = views
    n = len(view_item)
    in_interest = (sessions.favourites[view_session] == catalog.primary[view_item][:, None]).any(axis=1)
    click = rng.random(n) < np.where(in_interest, P_CLICK_IN_INTEREST, P_CLICK_OUTSIDE)
    cheapness = np.clip((np.median(catalog.price) / catalog.price[view_item]) ** 0.25, 0.6, 1.6)
    cart = click & (rng.random(n) < P_CART_GIVEN_CLICK * cheapness)
    purchase = cart & (rng.random(n) < P_PURCHASE_GIVEN_CART)
    click_time = view_time + (1_000 + rng.exponential(4_000, size=n)).astype(np.int64)
    cart_time = click_time + (5_000 + rng.exponential(40_000, size=n)).astype(np.int64)
    purchase_time = cart_time + (30_000 + rng.exponential(240_000, size=n)).astype(np.int64)
    quantity = rng.choice([1.0, 2.0, 3.0], size=n, p=[0.85, 0.12, 0.03])
    paid = np.round(catalog.price[view_item] * quantity, 2)

    rows = np.arange(n)
    parts = [
        (rows, 0, view_time, np.full(n, np.nan)),
        (rows[click], 1, click_time[click], np.full(int(click.sum()), np.nan)),
        (rows[cart], 2, cart_time[cart], quantity[cart]),
        (rows[purchase], 3, purchase_time[purchase], paid[purchase]),
    ]
    view_row = np.concatenate([p[0] for p in parts])
    kind = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    when = np.concatenate([p[2] for p in parts])
    value = np.concatenate([p[3] for p in parts])
    order = np.lexsort((kind, view_row, when))  # time; ties: generation order
    return view_row[order], kind[order], when[order], value[order]


EVENT_KINDS = ("view", "click", "add_to_cart", "purchase")


@dataclass
class Generated:
    catalog: _Catalog
    items: list[dict[str, Any]]
    user_ids: list[str]
    event_user: np.ndarray  # index into user_ids
    event_item: np.ndarray  # index into catalog.item_ids
    event_kind: np.ndarray  # index into EVENT_KINDS
    event_time: np.ndarray
    event_value: np.ndarray  # NaN when absent


def generate(config: Config) -> Generated:
    """The whole dataset in memory; exactly ``config.events`` events (the earliest ones generated)."""
    rng = np.random.default_rng(config.seed)
    catalog = _make_catalog(config, rng)
    expected_per_view = 1 + 0.25 * (1 + P_CART_GIVEN_CLICK * (1 + P_PURCHASE_GIVEN_CART))
    margin = 1.15
    while True:
        behaviour = np.random.default_rng([config.seed, int(margin * 1000)])
        count = math.ceil(config.events * margin / expected_per_view / MEAN_SESSION_VIEWS)
        sessions = _make_sessions(config, catalog, count, behaviour)
        views = _browse(catalog, sessions, behaviour)
        view_row, kind, when, value = _funnel(catalog, sessions, views, behaviour)
        if len(view_row) >= config.events:
            break
        margin *= 1.25 * config.events / max(len(view_row), 1)
    keep = slice(0, config.events)
    view_session, view_item, _ = views
    width = len(str(config.users))
    return Generated(
        catalog=catalog,
        items=item_records(catalog),
        user_ids=[f"u{i + 1:0{width}d}" for i in range(config.users)],
        event_user=sessions.user[view_session[view_row[keep]]],
        event_item=view_item[view_row[keep]],
        event_kind=kind[keep],
        event_time=when[keep],
        event_value=value[keep],
    )


def _value_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.10g}"


def interaction_lines(data: Generated) -> list[str]:
    """The events as JSON Lines (ids are plain ASCII, so no escaping is needed)."""
    users = [data.user_ids[u] for u in data.event_user.tolist()]
    items = [data.catalog.item_ids[i] for i in data.event_item.tolist()]
    kinds = [EVENT_KINDS[k] for k in data.event_kind.tolist()]
    lines = []
    for user, item, kind, when, value in zip(
        users, items, kinds, data.event_time.tolist(), data.event_value.tolist(), strict=True
    ):
        extra = "" if math.isnan(value) else f',"value":{_value_text(value)}'
        lines.append(f'{{"user_id":"{user}","item_id":"{item}","type":"{kind}","timestamp":{when}{extra}}}\n')
    return lines


def write(out_dir: Path, config: Config) -> dict[str, Any]:
    """Generate and write the three files; returns what generator.json holds."""
    started = time.perf_counter()
    data = generate(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ITEMS_FILE).open("w", encoding="utf-8", newline="\n") as handle:
        for record in data.items:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    with (
        (out_dir / INTERACTIONS_FILE).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as handle,
    ):
        lines = interaction_lines(data)
        for start in range(0, len(lines), 50_000):
            handle.write("".join(lines[start : start + 50_000]).encode("ascii"))
    kinds, counts = np.unique(data.event_kind, return_counts=True)
    meta = {
        "generator": "dataio.synthetic",
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "counts": {
            "items": len(data.items),
            "categories": config.categories,
            "users_with_events": len(np.unique(data.event_user)),
            "events": len(data.event_kind),
            "by_type": {EVENT_KINDS[k]: int(c) for k, c in zip(kinds.tolist(), counts.tolist(), strict=True)},
            "first_ms": int(data.event_time.min()),
            "last_ms": int(data.event_time.max()),
        },
    }
    (out_dir / GENERATOR_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    meta["seconds"] = round(time.perf_counter() - started, 2)
    return meta


def ensure(out_dir: Path = DEFAULT_OUT, config: Config | None = None) -> Path:
    """``out_dir`` holding the dataset for ``config`` (default ``Config()``), generated unless it is there."""
    config = config or Config()
    meta_path = out_dir / GENERATOR_FILE
    if meta_path.is_file() and (out_dir / INTERACTIONS_FILE).is_file() and (out_dir / ITEMS_FILE).is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == GENERATOR_VERSION and meta.get("config") == asdict(config):
            return out_dir
    write(out_dir, config)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m dataio.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    for name in ("items", "categories", "users", "events", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    config = Config(
        items=args.items, categories=args.categories, users=args.users, events=args.events, seed=args.seed
    )
    meta = write(args.out, config)
    print(json.dumps({"out": str(args.out), **meta["counts"], "seconds": meta["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
