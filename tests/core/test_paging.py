"""Paging by recommendation id: the id format, the cursor's checks, and pages without repeats."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest

from rtrec.events import Event
from rtrec.paging import (
    AFTER_PATTERN,
    MAX_PAGES,
    InvalidCursor,
    PageRequest,
    check_cursor,
    new_root,
    page_id,
    parse_cursor,
    recommend_page,
    snapshot_marker,
    state_at,
)
from rtrec.recommender import Recommender
from rtrec.rotation import RotationPolicy, ShownList
from rtrec.state import fold, fold_shown
from tests.conftest import MODEL_DIR

T0 = 1_800_000_000_000
WINDOW_S = 1800
ROTATION = RotationPolicy(rate=0.1, time_s=7200)


def test_a_first_page_id_is_a_version_7_uuid_of_its_time_and_marker():
    root = new_root(T0, marker=37)
    parsed = uuid.UUID(root)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(root[:12], 16) == T0
    assert new_root(T0, 37) != root  # random bits
    cursor = parse_cursor(root)
    assert (cursor.page, cursor.issued_ms, cursor.marker) == (1, T0, 37)
    assert parse_cursor(new_root(T0, 10_000)).marker == 0xFFF  # capped


def test_later_page_ids_name_their_chain_and_page_and_match_the_documented_pattern():
    root = new_root(T0)
    second = page_id(root, 2)
    assert second.startswith(f"{root}-2-") and len(second) <= 64 and second != page_id(root, 2)
    cursor = parse_cursor(second)
    assert (cursor.root, cursor.page, cursor.issued_ms) == (root, 2, T0)
    for page in (1, 2, 9, 10, MAX_PAGES):
        assert re.fullmatch(AFTER_PATTERN, page_id(root, page))


@pytest.mark.parametrize(
    "value",
    [
        uuid.uuid4().hex,  # ids from before paging: no time in them
        new_root(T0).upper(),
        new_root(T0) + "\n",
        f"{new_root(T0)}-1-0a0b0c0d",
        f"{new_root(T0)}-02-0a0b0c0d",
        f"{new_root(T0)}-{MAX_PAGES + 1}-0a0b0c0d",
        f"{new_root(T0)}-3",
        "",
        "x" * 64,
    ],
)
def test_values_that_name_no_page_are_refused(value):
    with pytest.raises(InvalidCursor):
        parse_cursor(value)
    assert re.fullmatch(AFTER_PATTERN, value) is None  # the schema's pattern is the same rule


def test_a_cursor_is_refused_once_expired_in_the_future_or_on_the_last_page():
    cursor = parse_cursor(new_root(T0))
    check_cursor(cursor, T0 + WINDOW_S * 1000, WINDOW_S)  # at the end of the window: fine
    with pytest.raises(InvalidCursor, match="expired"):
        check_cursor(cursor, T0 + WINDOW_S * 1000 + 1, WINDOW_S)
    with pytest.raises(InvalidCursor, match="future"):
        check_cursor(cursor, T0 - 10 * 60 * 1000, WINDOW_S)
    with pytest.raises(InvalidCursor, match="last page"):
        check_cursor(parse_cursor(page_id(cursor.root, MAX_PAGES)), T0, WINDOW_S)


# ---------- pages against the shipped model ----------


@pytest.fixture(scope="module")
def recommender():
    if not (MODEL_DIR / "model.tflite").exists():
        pytest.skip("no model artifact")
    serving = Recommender.from_model_dir(MODEL_DIR)
    # Exploration in every answer: the recomputed pages must reproduce the random draws too.
    serving.config = dataclasses.replace(serving.config, exploration_rate=1.0, exploration_share=0.2)
    return serving


def history_state(user: str, items: list[str], applied_ms: int):
    events = [Event(user, f"h{n}", item, "rating", T0 - 3_600_000 + n, 4.0) for n, item in enumerate(items)]
    return fold(None, user, events, None, applied_ms).state


def ids(recommender, outcome) -> list[str]:
    return [recommender.item_id_at(p.index) for p in outcome.picks]


def test_pages_of_one_chain_never_repeat_an_item(recommender):
    state = history_state("u1", ["50", "181", "100", "258", "1"], T0 - 60_000)
    root = new_root(T0)
    request = PageRequest(k=10)
    pages = [
        ids(recommender, recommend_page(recommender, state, request, root, page, T0 + page * 1000, ROTATION))
        for page in range(1, 6)
    ]
    everything = [item for page in pages for item in page]
    assert all(len(page) == 10 for page in pages)
    assert len(set(everything)) == len(everything) == 50
    # the first page is what an answer without paging would have been
    assert pages[0] == ids(recommender, recommend_page(recommender, state, request, root, 1, T0, ROTATION))


def test_a_new_event_between_pages_brings_nothing_back(recommender):
    user = "u2"
    state = history_state(user, ["50", "181", "100", "258", "1"], T0 - 60_000)
    root = new_root(T0)
    request = PageRequest(k=10)
    first = ids(recommender, recommend_page(recommender, state, request, root, 1, T0, ROTATION))
    # The user clicks the third item of page 1 after it was answered; its impression has not arrived.
    clicked = Event(user, "c1", first[2], "click", T0 + 2_000)
    later = fold(state, user, [clicked], None, T0 + 3_000).state
    assert later.recent[-1].item_id == first[2]
    second = ids(recommender, recommend_page(recommender, later, request, root, 2, T0 + 4_000, ROTATION))
    assert not set(first) & set(second) and len(second) == 10
    # The fresh answer (a new chain) does reflect the click: its history changed.
    assert state_at(later, T0).history() == state.history()
    assert state_at(later, T0 + 3_000, marker=1).history() == later.history()


def test_events_applied_in_the_first_pages_second_are_told_apart_by_the_ids_marker(recommender):
    user = "u5"
    state = history_state(user, ["50", "181", "100"], T0)  # applied in the same second as page 1
    marker = snapshot_marker(state, T0 + 400)
    assert marker == 3
    root = new_root(T0 + 400, marker)
    request = PageRequest(k=10)
    first = ids(recommender, recommend_page(recommender, state, request, root, 1, T0 + 400, ROTATION))
    # Within the same second the user rates an item of page 1, then asks for page 2 and 3.
    later = fold(state, user, [Event(user, "r9", first[0], "rating", T0 + 500, 5.0)], None, T0 + 600).state
    assert snapshot_marker(later, T0 + 700) == 4
    second = ids(recommender, recommend_page(recommender, later, request, root, 2, T0 + 700, ROTATION))
    third = ids(recommender, recommend_page(recommender, later, request, root, 3, T0 + 800, ROTATION))
    assert len(set(first + second + third)) == 30
    assert state_at(later, T0 + 400, marker).history() == state.history()


def test_the_chains_folded_impressions_cover_what_a_recomputation_cannot_see(recommender):
    user = "u3"
    state = history_state(user, ["50", "181", "100", "258", "1"], T0 - 60_000)
    root = new_root(T0)
    first = ids(recommender, recommend_page(recommender, state, PageRequest(k=10), root, 1, T0, ROTATION))
    # The client changed its filters between pages (the recomputed first page differs), but page 1's
    # impression was folded: nothing it showed comes back.
    folded = fold_shown(state, [ShownList(user, root, T0, tuple(first))], T0 + 1_000).state
    other_request = PageRequest(k=5)  # a recomputed first page of 5 leaves out half of what was shown
    second = ids(
        recommender, recommend_page(recommender, folded, other_request, root, 2, T0 + 2_000, ROTATION)
    )
    assert not set(first) & set(second)


def test_pages_without_a_state_are_popular_items_without_repeats(recommender):
    root = new_root(T0)
    request = PageRequest(k=20)
    first = ids(recommender, recommend_page(recommender, None, request, root, 1, T0, ROTATION))
    second = ids(recommender, recommend_page(recommender, None, request, root, 2, T0, ROTATION))
    assert len(first) == len(second) == 20 and not set(first) & set(second)


def test_rotation_pushes_recently_shown_items_down_a_fresh_answer(recommender):
    user = "u4"
    state = history_state(user, ["50", "181", "100", "258", "1"], T0 - 60_000)
    first_root = new_root(T0)
    first = ids(
        recommender, recommend_page(recommender, state, PageRequest(k=10), first_root, 1, T0, ROTATION)
    )
    folded = fold_shown(state, [ShownList(user, first_root, T0, tuple(first))], T0 + 1_000).state
    root = new_root(T0 + 500)
    strong = RotationPolicy(rate=1.0, time_s=7200)
    refreshed = ids(
        recommender, recommend_page(recommender, folded, PageRequest(k=10), root, 1, T0 + 500, strong)
    )
    assert not set(first) & set(refreshed)  # rate 1: every item just shown goes to the end
    off = RotationPolicy(rate=0.0, time_s=7200)
    same = ids(
        recommender, recommend_page(recommender, folded, PageRequest(k=10), first_root, 1, T0 + 60_000, off)
    )
    assert same == first  # rate 0: the same id gives the same answer
    recovered = ids(
        recommender,
        recommend_page(recommender, folded, PageRequest(k=10), first_root, 1, T0 + 7_201_000, strong),
    )
    assert recovered == first  # after the rotation time the penalty is gone
