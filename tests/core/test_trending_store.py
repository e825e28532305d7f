"""The trending table's data access (rtrec.stores.trending) against moto: sharded keys, ADD, TTL, reads."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from rtrec.stores.errors import StoreRejected, StoreUnavailable
from rtrec.stores.trending import TrendingTable, partition_key, shard_of
from tests.builders import create_trending_table

TABLE = "test-trending"
BUCKET = 498_836


@pytest.fixture
def trending_table(aws):
    """The TrendingTable as the template defines it (pk + item_id, on demand)."""
    return create_trending_table(TABLE)


def test_adds_accumulate_on_the_items_sharded_key_with_its_ttl(trending_table):
    store = TrendingTable(boto3.client("dynamodb"), TABLE, shards=4)
    store.add(BUCKET, "item-1", 2.0, expires_at=123)
    store.add(BUCKET, "item-1", 3.5, expires_at=456)
    key = {"pk": partition_key(BUCKET, shard_of("item-1", 4)), "item_id": "item-1"}
    item = trending_table.get_item(Key=key)["Item"]
    assert float(item["count"]) == 5.5 and int(item["expires_at"]) == 456


def test_a_bucket_spreads_over_its_shards_and_an_item_always_lands_on_the_same_one():
    shards = {shard_of(f"item-{n}", 8) for n in range(200)}
    assert shards == set(range(8))
    assert shard_of("item-7", 8) == shard_of("item-7", 8) and 0 <= shard_of("x", 1) < 1


def test_read_gathers_every_shard_of_every_bucket(trending_table):
    store = TrendingTable(boto3.client("dynamodb"), TABLE, shards=4, read_concurrency=3)
    for n in range(30):
        store.add(BUCKET, f"item-{n}", n + 1, expires_at=0)
    store.add(BUCKET - 1, "item-0", 7, expires_at=0)
    counts = store.read([BUCKET - 2, BUCKET - 1, BUCKET])
    assert counts[BUCKET - 2] == {} and counts[BUCKET - 1] == {"item-0": 7.0}
    assert counts[BUCKET] == {f"item-{n}": float(n + 1) for n in range(30)}


class SmallPages:
    """The moto client, answering Query in pages of at most two items (as DynamoDB does past 1 MB)."""

    def __init__(self, client):
        self.client, self.queries = client, 0

    def query(self, **kwargs):
        self.queries += 1
        return self.client.query(**{**kwargs, "Limit": min(2, kwargs.get("Limit", 2))})

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_read_follows_the_pages_up_to_the_cap(trending_table):
    writer = TrendingTable(boto3.client("dynamodb"), TABLE, shards=1)
    for n in range(7):
        writer.add(BUCKET, f"item-{n}", 1, expires_at=0)
    paged = SmallPages(boto3.client("dynamodb"))
    assert len(TrendingTable(paged, TABLE, shards=1).read([BUCKET])[BUCKET]) == 7
    assert paged.queries == 4
    capped = TrendingTable(SmallPages(boto3.client("dynamodb")), TABLE, shards=1, max_items_per_partition=3)
    assert len(capped.read([BUCKET])[BUCKET]) == 3 and capped.truncated_reads == 1


class Failing:
    def __init__(self, code: str) -> None:
        self.code = code

    def update_item(self, **_):
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "UpdateItem")

    query = update_item


def test_throttling_is_unavailable_and_a_refusal_is_rejected():
    with pytest.raises(StoreUnavailable):
        TrendingTable(Failing("ProvisionedThroughputExceededException"), TABLE, 2).add(1, "a", 1, 0)
    with pytest.raises(StoreUnavailable):
        TrendingTable(Failing("ThrottlingException"), TABLE, 2).read([1])
    with pytest.raises(StoreRejected):
        TrendingTable(Failing("ValidationException"), TABLE, 2).add(1, "a", 1, 0)
    with pytest.raises(StoreRejected):
        TrendingTable(Failing("ValidationException"), TABLE, 2).add(1, "a", 0.0, 0)  # nothing to add


def test_a_missing_table_is_rejected(aws):
    with pytest.raises(StoreRejected, match="ResourceNotFoundException"):
        TrendingTable(boto3.client("dynamodb"), "no-such-table", 1).add(1, "a", 1, 0)
