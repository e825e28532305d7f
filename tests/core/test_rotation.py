"""Rotation: the shown-list fold (bounds, idempotence, engagement), the demotion maths, impression parsing."""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib

import numpy as np
import pytest

from rtrec.events import Event
from rtrec.ingest import BatchIngestor, InvalidLogPayload, log_events
from rtrec.rotation import (
    MIN_MULTIPLIER,
    SHOWN_CAPACITY,
    SHOWN_DTYPE,
    SHOWN_HORIZON_S,
    InvalidImpression,
    RotationPolicy,
    ShownList,
    chain_key,
    demotion,
    parse_impression_line,
)
from rtrec.state import UserState, fold, fold_shown, item_key
from rtrec.stores.errors import StoreRejected, StoreUnavailable

NOW = 1_800_000_000_000
NOW_S = NOW // 1000
ROOT = "0195a1b2c3d47abc8def0123456789ab"


def entries(*rows: tuple[str, int, str]) -> np.ndarray:
    """Shown entries from (item id, seconds before NOW, recommendation id)."""
    return np.array([(item_key(i), NOW_S - ago, chain_key(r)) for i, ago, r in rows], dtype=SHOWN_DTYPE)


def user_with_history(user: str = "u1", items: tuple[str, ...] = ("1", "2")) -> UserState:
    events = [Event(user, f"e{n}", item, "view", NOW - 10_000 + n) for n, item in enumerate(items)]
    return fold(None, user, events, None, NOW).state


def shown(items: list[str], rec: str = ROOT, user: str = "u1", ts: int = NOW) -> ShownList:
    return ShownList(user, rec, ts, tuple(items))


# ---------- demotion maths ----------


def test_a_showing_penalises_by_the_rate_and_recovers_linearly_over_the_rotation_time():
    policy = RotationPolicy(rate=0.2, time_s=1000)
    result = demotion(entries(("a", 0, "r1"), ("b", 500, "r1"), ("c", 1000, "r1")), NOW_S, policy)
    factors = dict(zip(result.keys.tolist(), result.factors.tolist(), strict=True))
    assert factors[item_key("a")] == pytest.approx(0.8)  # just shown: 1 - rate
    assert factors[item_key("b")] == pytest.approx(0.9)  # half recovered
    assert item_key("c") not in factors  # T ago: recovered


def test_showings_multiply_and_rate_zero_turns_rotation_off():
    rows = entries(("a", 0, "r1"), ("a", 0, "r2"), ("a", 250, "r3"))
    result = demotion(rows, NOW_S, RotationPolicy(rate=0.5, time_s=1000))
    assert result.factors.tolist() == pytest.approx([0.5 * 0.5 * (1 - 0.5 * 0.75)])
    assert len(demotion(rows, NOW_S, RotationPolicy(rate=0.0, time_s=1000))) == 0


def test_rate_one_pushes_a_just_shown_item_to_the_floor_without_reaching_zero():
    result = demotion(entries(("a", 0, "r1")), NOW_S, RotationPolicy(rate=1.0, time_s=1000))
    assert result.factors.tolist() == pytest.approx([MIN_MULTIPLIER])
    assert math.isfinite(math.log(result.factors[0]))


def test_a_chain_and_later_showings_can_be_left_out():
    rows = entries(("a", 0, ROOT), ("b", 10, "other"), ("c", 100, "other"))
    policy = RotationPolicy(rate=0.5, time_s=1000)
    assert item_key("a") not in demotion(rows, NOW_S, policy, skip_chain=chain_key(ROOT)).keys.tolist()
    before = demotion(rows, NOW_S - 50, policy, shown_before_s=NOW_S - 50)
    assert before.keys.tolist() == [item_key("c")]  # only what was shown before then


def test_multipliers_map_onto_a_catalogs_item_keys():
    result = demotion(entries(("a", 0, "r1"), ("z", 0, "r1")), NOW_S, RotationPolicy(rate=0.5, time_s=1000))
    catalog_keys = np.array([0, item_key("a"), item_key("b"), item_key("z")], dtype="<u4")
    assert result.multipliers(catalog_keys).tolist() == pytest.approx([1.0, 0.5, 1.0, 0.5])


def test_a_chain_is_its_first_pages_id():
    assert chain_key(f"{ROOT}-2-0a0b0c0d") == chain_key(f"{ROOT}-3-ffffffff") == chain_key(ROOT)
    assert chain_key(ROOT) != chain_key("0195a1b2c3d47abc8def0123456789ac")


# ---------- the shown-list fold ----------


def test_an_impression_never_creates_a_state():
    assert fold_shown(None, [shown(["9"])], NOW) is None


def test_fold_adds_unseen_items_and_bumps_the_version_only():
    state = user_with_history(items=("1", "2"))
    result = fold_shown(state, [shown(["1", "7", "8"])], NOW)
    assert result is not None and result.changed and result.added == 2  # "1" was seen: never served again
    assert sorted(result.state.shown["item"].tolist()) == sorted([item_key("7"), item_key("8")])
    assert set(result.state.shown["chain"].tolist()) == {chain_key(ROOT)}
    assert result.state.version == state.version + 1
    assert result.state.expires_at == state.expires_at  # the TTL follows events, not impressions
    assert state.shown.size == 0  # the input is untouched


def test_a_redelivered_impression_adds_nothing():
    state = user_with_history()
    first = fold_shown(state, [shown(["7", "8"])], NOW)
    again = fold_shown(first.state, [shown(["7", "8"]), shown(["8"])], NOW + 5_000)
    assert not again.changed and again.duplicates == 3
    assert again.state is first.state
    later_page = fold_shown(first.state, [shown(["9"], rec=f"{ROOT}-2-01020304")], NOW)
    assert later_page.added == 1  # same chain, another item


def test_the_list_keeps_the_newest_entries_within_capacity_and_horizon():
    state = user_with_history()
    state.shown = entries(("old", SHOWN_HORIZON_S + 1, "r0"))
    impressions = [
        shown([f"i{n}-{m}" for m in range(10)], rec=f"r{n}", ts=NOW - (200 - n) * 1000) for n in range(150)
    ]
    result = fold_shown(state, impressions, NOW)
    assert len(result.state.shown) == SHOWN_CAPACITY
    assert item_key("old") not in result.state.shown["item"].tolist()  # past the horizon
    assert (np.diff(result.state.shown["at"].astype(np.int64)) >= 0).all()  # oldest first
    assert item_key("i149-9") in result.state.shown["item"].tolist()  # the newest survive
    assert item_key("i0-0") not in result.state.shown["item"].tolist()
    size = len(result.state.to_item()["shown"])
    assert size == SHOWN_CAPACITY * SHOWN_DTYPE.itemsize == 12_000


def test_an_event_on_a_shown_item_stops_its_penalty_whatever_the_order():
    state = user_with_history()
    click = [Event("u1", "click-7", "7", "click", NOW + 1)]
    shown_first = fold(fold_shown(state, [shown(["7", "8"])], NOW).state, "u1", click, None, NOW).state
    event_first = fold_shown(fold(state, "u1", click, None, NOW).state, [shown(["7", "8"])], NOW).state
    assert shown_first.shown["item"].tolist() == event_first.shown["item"].tolist() == [item_key("8")]


def test_the_shown_list_round_trips_through_the_item():
    state = fold_shown(user_with_history(), [shown(["7", "8"])], NOW).state
    back = UserState.from_item(state.to_item())
    assert back.shown.tolist() == state.shown.tolist()
    assert "shown" not in user_with_history().to_item()  # absent until something is shown
    assert UserState.from_item({"user_id": "u1", "shown": b"\x01" * 13}).shown.size == 1  # torn tail ignored


# ---------- impression lines ----------


def impression_line(**changes) -> str:
    line = {
        "level": "INFO",
        "message": "impression",
        "kind": "impression",
        "recommendation_id": ROOT,
        "user_id": "u1",
        "route": "GET /v1/recommendations",
        "model_version": "v1",
        "ts": NOW,
        "items": [["7", "model"], ["8", "explore"]],
    }
    line.update(changes)
    return json.dumps(line)


def test_an_impression_line_parses_into_its_shown_items():
    parsed = parse_impression_line(impression_line())
    assert parsed == ShownList("u1", ROOT, NOW, ("7", "8"))
    as_objects = parse_impression_line(impression_line(items=[{"item_id": "7", "position": 1}]))
    assert as_objects is not None and as_objects.item_ids == ("7",)


@pytest.mark.parametrize(
    "line",
    [impression_line(route="POST /v1/recommendations/rank"), json.dumps({"message": "answered"}), "[1]"],
)
def test_other_lines_and_routes_are_not_rotated(line):
    assert parse_impression_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        impression_line(user_id=""),
        impression_line(user_id="x" * 200),
        impression_line(ts="soon"),
        impression_line(ts=True),
        impression_line(items="7,8"),
        impression_line(items=[[]]),
        impression_line(items=[["\x00"]]),
        impression_line(recommendation_id=None),
    ],
)
def test_broken_impressions_are_refused_with_a_reason(line):
    with pytest.raises(InvalidImpression):
        parse_impression_line(line)


# ---------- the CloudWatch Logs envelope ----------


def delivery(payload: object, *, compress=gzip.compress) -> dict:
    return {"awslogs": {"data": base64.b64encode(compress(json.dumps(payload).encode())).decode()}}


def test_log_events_open_the_gzip_base64_envelope():
    payload = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/aws/lambda/rtrec/RecommendFunction",
        "logEvents": [
            {"id": "1", "timestamp": NOW, "message": "a"},
            {"id": "2", "timestamp": NOW, "message": "b"},
        ],
    }
    assert log_events(delivery(payload)) == [("1", "a"), ("2", "b")]
    assert log_events(delivery({"messageType": "CONTROL_MESSAGE", "logEvents": [{"message": "x"}]})) == []


@pytest.mark.parametrize(
    "event",
    [
        {"awslogs": {"data": "not base64!"}},
        {"awslogs": {"data": base64.b64encode(b"plain bytes").decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b"{not json")).decode()}},
        {"awslogs": {}},
        delivery([1, 2]),
        delivery({"messageType": "DATA_MESSAGE"}),
        delivery({"logEvents": []}, compress=lambda b: zlib.compress(b)),  # zlib, not gzip
    ],
)
def test_a_bad_payload_is_an_error_with_a_reason(event):
    with pytest.raises(InvalidLogPayload):
        log_events(event)


def test_a_payload_that_expands_without_bound_is_refused(monkeypatch):
    import rtrec.ingest

    monkeypatch.setattr(rtrec.ingest, "_MAX_LOG_PAYLOAD_BYTES", 1000)
    with pytest.raises(InvalidLogPayload, match="limit"):
        log_events(delivery({"logEvents": [{"id": "1", "message": "x" * 5000}]}))


# ---------- the ingestor's impression path ----------


class MemoryStore:
    """A user-state store in a dict, with the version lock; ``fail`` maps user -> error to raise."""

    def __init__(self, states: dict[str, UserState], fail: dict[str, Exception] | None = None) -> None:
        self.states = states
        self.fail = fail or {}
        self.puts = 0

    def get(self, user_id: str, consistent: bool = True) -> UserState | None:
        return self.states.get(user_id)

    def get_many(self, user_ids, consistent: bool = True):
        return {u: self.states.get(u) for u in user_ids}

    def put(self, state: UserState) -> None:
        if state.user_id in self.fail:
            raise self.fail[state.user_id]
        self.puts += 1
        self.states[state.user_id] = state


def test_one_users_failure_never_drops_anothers_impressions():
    states = {u: user_with_history(u) for u in ("ok", "throttled", "refused")}
    store = MemoryStore(
        states, fail={"throttled": StoreUnavailable("throttled"), "refused": StoreRejected("too big")}
    )
    errors = []
    ingestor = BatchIngestor(
        store, None, None, on_error=lambda m, e, x: errors.append(m), sleep=lambda s: None
    )
    lines = [
        (str(n), impression_line(user_id=user, recommendation_id=f"r-{user}"))
        for n, user in enumerate(["ok", "throttled", "refused", "nobody"])
    ] + [("9", "{broken"), ("10", json.dumps({"message": "answered"}))]
    outcome = ingestor.process_impressions(lines)
    assert (outcome.lines, outcome.impressions, outcome.invalid) == (6, 4, 1)
    assert (outcome.users_written, outcome.users_failed, outcome.users_refused) == (1, 1, 1)
    assert outcome.users_without_state == 1 and "nobody" not in store.states  # never created
    assert outcome.retry  # the throttled user comes again with the redelivered batch
    assert len(store.states["ok"].shown) == 2
    assert len(errors) == 3

    store.fail.clear()
    again = ingestor.process_impressions(lines)  # Lambda's retry: only what is missing is added
    assert again.shown_added == 4 and again.duplicates == 2 and not again.retry
    assert len(store.states["ok"].shown) == 2


# ---------- settings ----------

BASE_ENV = {"USER_STATE_TABLE": "t", "MODEL_DIR": "/opt/model"}


def test_rotation_and_paging_settings_default_to_recombees_and_are_bounded():
    from rtrec.settings import RecommendSettings, SettingsError

    defaults = RecommendSettings.from_env(BASE_ENV)
    assert (defaults.rotation_rate, defaults.rotation_time_s, defaults.paging_window_s) == (0.1, 7200, 1800)
    off = RecommendSettings.from_env({**BASE_ENV, "ROTATION_RATE": "0"})
    assert not RotationPolicy(off.rotation_rate, off.rotation_time_s).enabled
    for name, value in [
        ("ROTATION_RATE", "1.5"),
        ("ROTATION_RATE", "-0.1"),
        ("ROTATION_TIME_SECONDS", "30"),
        ("ROTATION_TIME_SECONDS", str(SHOWN_HORIZON_S + 1)),  # the shown list keeps a day
        ("PAGING_WINDOW_SECONDS", "0"),
        ("PAGING_WINDOW_SECONDS", "90000"),
    ]:
        with pytest.raises(SettingsError, match=name):
            RecommendSettings.from_env({**BASE_ENV, name: value})


@pytest.mark.parametrize("wire", ["client", "table"])
def test_the_shown_list_round_trips_through_dynamodb(wire, user_state_table):
    import boto3

    from rtrec.stores.user_state import UserStateStore

    if wire == "client":  # the Lambdas' low-level client
        store = UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name)
    else:
        store = UserStateStore(user_state_table)
    store.put(user_with_history())
    written = fold_shown(store.get("u1"), [shown(["7", "8"])], NOW).state
    store.put(written)  # conditional on the version read
    loaded = store.get("u1")
    assert loaded.shown.tolist() == written.shown.tolist() and loaded.version == 2
