"""A tiny hand-written MovieLens fixture in RecBole's atomic-file format (no MovieLens data)."""

from __future__ import annotations

import pytest

from dataio import movielens

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
