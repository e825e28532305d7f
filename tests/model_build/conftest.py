"""A tiny hand-written MovieLens fixture in RecBole's atomic-file format (no MovieLens data)."""

from __future__ import annotations

import numpy as np
import pytest

from dataio import movielens
from dataio.dataset import Dataset, InteractionColumns
from rtrec.catalog import CatalogItem

INTER = "\n".join(
    [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        # user 1: items 10, 11 share the last timestamp; file order breaks the tie (10 before 11)
        "1\t12\t5\t100",
        "1\t13\t3\t200",
        "1\t14\t4\t300",
        "1\t10\t2\t400",
        "1\t11\t1\t400",
        # user 2, written out of time order
        "2\t13\t4\t50",
        "2\t10\t5\t10",
        "2\t12\t3\t30",
        "2\t14\t2\t20",
        # user 3 has too few interactions to split
        "3\t10\t4\t5",
        "3\t11\t4\t6",
    ]
)
ITEMS = "\n".join(
    [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "10\tA\t1995\tAnimation Children's Comedy",
        "11\tB\t1995\tSci-Fi Film-Noir",
        "12\tC\t1995\tDrama",
        "13\tD\t1995\t",
        "14\tE\t1995\tWestern",
    ]
)


@pytest.fixture
def tiny():
    return movielens.parse_dataset(INTER, ITEMS)


@pytest.fixture
def tiny_dataset(tiny):
    """The same fixture through the adapter interface (``dataio.dataset.Dataset``)."""
    return movielens.as_dataset(tiny, fingerprint="tiny")


@pytest.fixture
def shop() -> Dataset:
    """u1: view A, click A, view B, view C, add_to_cart C, view A (repeat), view D, purchase D, view E.

    u2: view B, view B, view C (2 new items only: skipped).
    """
    events = [
        ("u1", "A", "view", None, 1),
        ("u1", "A", "click", None, 2),
        ("u1", "B", "view", None, 3),
        ("u1", "C", "view", None, 4),
        ("u1", "C", "add_to_cart", 2.0, 5),
        ("u1", "A", "view", None, 6),
        ("u1", "D", "view", None, 7),
        ("u1", "D", "purchase", 40.0, 8),
        ("u1", "X", "view", None, 8),  # not in the catalog: dropped
        ("u1", "E", "view", None, 9),
        ("u1", "E", "click", None, 10),  # after the test interaction: never used
        ("u2", "B", "view", None, 1),
        ("u2", "B", "view", None, 2),
        ("u2", "C", "view", None, 3),
    ]
    columns = InteractionColumns(
        user_ids=[e[0] for e in events],
        item_ids=[e[1] for e in events],
        types=[e[2] for e in events],
        values=[np.nan if e[3] is None else e[3] for e in events],
        timestamps_ms=[1_000_000 + e[4] for e in events],
    )
    items = [
        CatalogItem("A", ("Home > Kitchen",)),
        CatalogItem("B", ("Toys", "Home > Kitchen")),
        CatalogItem("C", ()),
        CatalogItem("D", ("Garden",)),
        CatalogItem("E", ("Toys",)),
    ]
    return Dataset(name="shop", interactions=columns, items=items, fingerprint="f")
