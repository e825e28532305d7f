"""The user-state item, its DynamoDB round trip and the event fold."""

from __future__ import annotations

import json
import random

import boto3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataio.movielens import GENRES
from rtrec.events import Event
from rtrec.features import EVENT_TYPES, Catalog, HistoryStep
from rtrec.state import (
    INTEREST_HALF_LIFE_MS,
    RECENT_LIMIT,
    StreamPosition,
    UserState,
    event_key,
    fold,
    item_key,
)
from rtrec.stores.user_state import UserStateStore, VersionConflict

NOW = 1_760_000_000_000
CATALOG = Catalog(
    item_ids=["1", "2", "3", "4"],
    categories=GENRES,
    category_ids=[[1], [5], [1, 15], [8]],  # Action; Comedy; Action+Sci-Fi; Drama
    popularity=[10, 5, 3, 1],
)


def event(n: int, item: str = "1", kind: str = "view", ts: int | None = None, **extra) -> Event:
    return Event(
        user_id="u1", event_id=f"e{n}", item_id=item, type=kind, ts=NOW + n if ts is None else ts, **extra
    )


def test_first_fold_creates_version_one_with_every_field():
    result = fold(None, "u1", [event(1, "3", "click"), event(2, "9", "rating", value=5.0)], CATALOG, NOW)
    state = result.state
    assert state.version == 1
    assert [i.item_id for i in state.recent] == ["3", "9"]
    assert state.history() == [HistoryStep("3", "click", None), HistoryStep("9", "rating", 5.0)]
    assert state.seen.tolist() == [item_key("3"), item_key("9")]
    assert state.counts == {"click": 1, "rating": 1}
    # A click (weight 2) on an Action+Sci-Fi item splits its weight; item 9 is unknown: no genre.
    assert state.interests == pytest.approx({"Action": 1.0, "Sci-Fi": 1.0})
    assert (state.last_event_at, state.last_event_id) == (NOW + 2, "e2")
    assert state.interests_at == NOW + 2
    assert state.event_keys.tolist() == [event_key("e1"), event_key("e2")]
    assert state.updated_at == NOW
    assert state.expires_at > NOW // 1000


def test_fold_leaves_the_input_state_untouched():
    first = fold(None, "u1", [event(1)], CATALOG, NOW).state
    snapshot = json.dumps(first.to_item(), default=str)
    fold(first, "u1", [event(2)], CATALOG, NOW)
    assert json.dumps(first.to_item(), default=str) == snapshot


def test_duplicate_event_id_changes_nothing_even_in_a_later_batch():
    first = fold(None, "u1", [event(1, "1", "purchase")], CATALOG, NOW).state
    again = fold(first, "u1", [event(1, "1", "purchase")], CATALOG, NOW + 5)
    assert again.applied == [] and len(again.duplicates) == 1
    assert not again.changed
    assert again.state.to_item() == first.to_item()


def test_duplicate_within_one_batch_is_counted_once():
    result = fold(None, "u1", [event(1), event(1), event(2)], CATALOG, NOW)
    assert result.state.counts == {"view": 2}
    assert [e.event_id for e in result.duplicates] == ["e1"]


def test_late_event_never_moves_last_event_back_but_enters_history_in_time_order():
    state = fold(None, "u1", [event(5, "1")], CATALOG, NOW).state
    state = fold(state, "u1", [event(3, "2")], CATALOG, NOW).state
    assert (state.last_event_at, state.last_event_id) == (NOW + 5, "e5")
    assert [i.event_id for i in state.recent] == ["e3", "e5"]
    assert state.has_seen(["1", "2", "3"]).tolist() == [True, True, False]
    assert state.interests_at == NOW + 5


def test_interests_decay_with_half_life():
    state = fold(None, "u1", [event(0, "2", "view", ts=NOW)], CATALOG, NOW).state
    later = fold(state, "u1", [event(1, "4", "view", ts=NOW + INTEREST_HALF_LIFE_MS)], CATALOG, NOW).state
    assert later.interests["Comedy"] == pytest.approx(0.5)
    assert later.interests["Drama"] == pytest.approx(1.0)
    assert later.interests_as_of(NOW + 2 * INTEREST_HALF_LIFE_MS)["Drama"] == pytest.approx(0.5)


def test_skip_and_low_rating_count_but_add_no_interest():
    state = fold(None, "u1", [event(1, "1", "skip"), event(2, "1", "rating", value=1.0)], CATALOG, NOW).state
    assert state.counts == {"skip": 1, "rating": 1}
    assert state.interests == {}


def test_caps_keep_the_item_far_below_400_kb():
    long_id = "x" * 64
    state = None
    for batch in range(12):
        events = [
            Event(
                "u1",
                f"{long_id[:50]}{batch:04d}{n:06d}",
                f"{long_id[:54]}{batch:04d}{n:06d}",
                "rating",
                NOW + batch * 1000 + n,
                value=4.0,
                session_id=long_id,
                context={"k": "v" * 128},
            )
            for n in range(100)
        ]
        state = fold(state, "u1", events, CATALOG, NOW).state
    assert len(state.recent) == RECENT_LIMIT
    assert len(state.seen) == 1200
    assert len(state.event_keys) == len(state.event_applied_at) == 1200
    assert state.counts == {"rating": 1200}
    assert len(json.dumps(state.to_item(), default=str).encode()) < 100_000
    # the newest survive the caps
    assert state.recent[-1].ts == NOW + 11 * 1000 + 99
    assert state.event_keys[-len(events) :].tolist() == [event_key(e.event_id) for e in events]
    assert not fold(state, "u1", events[-1:], CATALOG, NOW).changed  # a recent redelivery is still caught


@pytest.fixture(params=["client", "table"])
def store(request, user_state_table):
    """The store both ways: on a low-level client (the Lambdas) and on a Table resource (tests, replay)."""
    if request.param == "client":
        return UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name)
    return UserStateStore(user_state_table)


def test_item_round_trips_through_dynamodb(store, user_state_table):
    assert store.get("u1") is None
    state = fold(None, "u1", [event(1, "3", "click"), event(2, "1", "rating", value=4.5)], CATALOG, NOW).state
    store.put(state)
    loaded = store.get("u1")
    assert loaded.to_item() == state.to_item()
    assert loaded.history() == state.history()
    raw = user_state_table.get_item(Key={"user_id": "u1"})["Item"]
    assert raw["version"] == 1 and raw["recent"][1]["value"] == 4.5


def test_put_is_an_optimistic_lock(store):
    first = fold(None, "u1", [event(1)], CATALOG, NOW).state
    store.put(first)
    with pytest.raises(VersionConflict):
        store.put(first)  # version 1 again: the item exists
    second = fold(first, "u1", [event(2)], CATALOG, NOW).state
    store.put(second)
    stale = fold(first, "u1", [event(3)], CATALOG, NOW).state  # also version 2, built from version 1
    with pytest.raises(VersionConflict):
        store.put(stale)
    assert store.get("u1").version == 2


# --- the property: duplication and reordering within the window give the same state ---

event_strategy = st.builds(
    lambda n, item, kind, dt, value: Event(
        "u1", f"e{n}", item, kind, NOW + dt, value=value if kind == "rating" else None
    ),
    n=st.integers(0, 10_000),
    item=st.sampled_from(["1", "2", "3", "4", "unknown-a", "unknown-b"]),
    kind=st.sampled_from(EVENT_TYPES),
    dt=st.integers(-30 * 24 * 3600 * 1000, 30 * 24 * 3600 * 1000),
    value=st.one_of(st.none(), st.floats(0, 5)),
)


# Distinct ids and timestamps: same-timestamp events keep their arrival order, which a shuffle changes.
UNIQUE_EVENTS = (lambda e: e.event_id, lambda e: e.ts)


def canonical(state: UserState) -> dict:
    item = state.to_item()
    # The de-duplication window remembers arrival order; only its content is order independent.
    for name, dtype in (("event_keys", "<u8"), ("seen", "<u4")):
        item[name] = sorted(np.frombuffer(item[name], dtype=dtype).tolist())
    item["interests"] = {k: round(float(v), 6) for k, v in item["interests"].items()}
    return item


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(event_strategy, min_size=1, max_size=120, unique_by=UNIQUE_EVENTS),
    seed=st.integers(0, 2**32 - 1),
    extra=st.integers(0, 40),
)
def test_duplicates_and_reordering_give_the_same_state(events, seed, extra):
    reference = fold(None, "u1", events, CATALOG, NOW).state

    rng = random.Random(seed)
    shuffled = events + [rng.choice(events) for _ in range(extra)]
    rng.shuffle(shuffled)
    state = None
    position = 0
    while position < len(shuffled):  # random batch boundaries
        size = rng.randint(1, 25)
        result = fold(state, "u1", shuffled[position : position + size], CATALOG, NOW)
        state = result.state if result.changed else state
        position += size
    assert canonical(state) == canonical(reference) | {"version": state.version}


def test_get_many_reads_existing_and_missing_users_past_one_call(store):
    for n in range(0, 150, 2):
        store.put(fold(None, f"u{n}", [Event(f"u{n}", "e", "1", "view", NOW)], CATALOG, NOW).state)
    states = store.get_many([f"u{n}" for n in range(150)] + ["u0"])
    assert len(states) == 150
    assert all((states[f"u{n}"] is None) == (n % 2 == 1) for n in range(150))
    assert states["u4"].to_item() == store.get("u4").to_item()


@pytest.mark.parametrize("wire", ["client", "table"])
def test_get_many_falls_back_to_single_reads_for_unprocessed_keys(wire, user_state_table):
    UserStateStore(user_state_table).put(
        fold(None, "a", [Event("a", "e", "1", "view", NOW)], CATALOG, NOW).state
    )
    real_client = boto3.client("dynamodb") if wire == "client" else user_state_table.meta.client

    class ThrottledClient:
        calls = 0

        def batch_get_item(self, RequestItems):
            ThrottledClient.calls += 1
            (name, request) = next(iter(RequestItems.items()))
            return {"Responses": {name: []}, "UnprocessedKeys": {name: request}}

        def get_item(self, **kwargs):
            return real_client.get_item(**kwargs)

    class Table:
        name = user_state_table.name
        meta = type("Meta", (), {"client": ThrottledClient()})()

    if wire == "client":
        store = UserStateStore.from_client(ThrottledClient(), user_state_table.name)
    else:
        store = UserStateStore(Table())
    states = store.get_many(["a", "b"])
    assert ThrottledClient.calls == 8
    assert states["a"].counts == {"view": 1} and states["b"] is None


# --- the property: every redelivery Kinesis can make, and client re-sends, count each event once ---


def canonical_without_positions(state: UserState) -> dict:
    item = canonical(state)
    del item["shard_marks"], item["version"], item["event_applied_at"]
    return item


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(event_strategy, min_size=1, max_size=80, unique_by=UNIQUE_EVENTS),
    seed=st.integers(0, 2**32 - 1),
    resend_share=st.floats(0, 0.5),
)
def test_every_redelivery_and_resend_counts_each_event_once(events, seed, resend_share):
    """Batches end at random points; a failure makes Kinesis deliver again from any earlier record
    of the failed batch (records keep their sequence numbers), and clients re-send some events
    later under new sequence numbers. The state is the state of each event applied once."""
    rng = random.Random(seed)
    stream: list[Event] = []
    for event in events:
        stream.append(event)
        if rng.random() < resend_share:  # the client did not see the 202 and sends the event again
            stream.insert(rng.randint(len(stream), len(stream) + 5), event)
    positions = [StreamPosition("shardId-0", 1000 + n) for n in range(len(stream))]

    state = None
    start, rounds = 0, 0
    while start < len(stream):
        rounds += 1
        batch = range(start, min(len(stream), start + rng.randint(1, 30)))
        written = len(batch) if rounds > 200 else rng.randint(0, len(batch))  # what reached the table
        if written:
            chosen = list(batch)[:written]
            result = fold(
                state,
                "u1",
                [stream[i] for i in chosen],
                CATALOG,
                NOW,
                positions=[positions[i] for i in chosen],
            )
            state = result.state if result.changed else state
        # The next delivery starts anywhere from the batch's first record to the first one not written.
        start = rng.randint(batch.start, batch.start + written) if written < len(batch) else batch.stop
        start = max(start, batch.start + (1 if rounds > 200 else 0))

    reference = fold(None, "u1", events, CATALOG, NOW).state
    assert canonical_without_positions(state) == canonical_without_positions(reference)
    assert state.counts == reference.counts
