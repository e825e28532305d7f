"""The replay's in-memory user-state table keeps DynamoDB's conditional-write contract for the store."""

from __future__ import annotations

import pytest

from evaluation.replay import InMemoryStateTable
from rtrec.state import UserState
from rtrec.stores.user_state import UserStateStore, VersionConflict


def state(version: int) -> UserState:
    return UserState.from_item({"user_id": "u1", "version": version, "counts": {"view": version}})


def test_first_write_then_versioned_writes_and_conflicts():
    store = UserStateStore(InMemoryStateTable("states"))
    assert store.get("u1") is None
    store.put(state(1))
    with pytest.raises(VersionConflict):
        store.put(state(1))  # a second "first write" loses
    store.put(state(2))
    with pytest.raises(VersionConflict):
        store.put(state(2))  # written from a stale read of version 1
    assert store.get("u1").version == 2
    assert store.get("u1").counts == {"view": 2}


def test_reads_are_copies():
    table = InMemoryStateTable("states")
    store = UserStateStore(table)
    store.put(state(1))
    store.get("u1").counts["view"] = 99
    assert store.get("u1").counts == {"view": 1}


def test_batch_reads_and_deletes_behave_like_dynamodb_for_the_store():
    store = UserStateStore(InMemoryStateTable("states"))
    store.put(state(1))
    found = store.get_many(["u1", "nobody"])
    assert found["u1"].version == 1 and found["nobody"] is None
    store.delete("u1")
    store.delete("u1")  # deleting what is not there succeeds, as in DynamoDB
    assert store.get("u1") is None
