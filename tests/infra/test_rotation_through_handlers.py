"""Rotation and paging through the real handlers, with the template's log subscription emulated locally:
recommend logs an impression, the subscription hands it to ingest, the next answer rotates."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from evaluation.replay import InMemoryStateTable
from infra.local.inprocess import InProcessService
from infra.local.log_subscriptions import awslogs_event
from rtrec.paging import MAX_PAGES, new_root, page_id
from rtrec.state import UserState
from rtrec.stores.errors import StoreUnavailable
from rtrec.stores.user_state import UserStateStore
from tests.conftest import MODEL_DIR, REPO_ROOT

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")

# Impression lines are INFO; rate 1 makes the effect of one folded impression certain.
OVERRIDES = {
    "PER_USER_REQUEST_RATE": "0",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "ROTATION_RATE": "1",
    "EXPLORATION_SHARE": "0",  # two answers to one state are then the same list
}


@pytest.fixture(scope="module")
def service():
    with InProcessService(REPO_ROOT / "template.yaml", OVERRIDES, drop_metric_lines=True) as running:
        name = running.functions[running.stream_source.function_id].environment["USER_STATE_TABLE"]
        running.table = InMemoryStateTable(name)
        running.replace_user_state_store(UserStateStore(running.table))
        yield running


def ingest_ratings(service, user: str, items: list[str]) -> None:
    now = int(time.time() * 1000)
    records = [
        (user, json.dumps({"user_id": user, "event_id": f"{user}-{item}", "item_id": item, "type": "rating",
                           "value": 5, "ts": now + n}).encode())
        for n, item in enumerate(items)
    ]  # fmt: skip
    assert service.ingest(records).get("batchItemFailures") == []


def items(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def get(service, user: str, query: str = "k=10") -> tuple[int, dict]:
    return service.http("GET", "/v1/recommendations", user, query=query)


def test_the_template_subscribes_ingest_to_the_recommend_functions_impression_lines(service):
    (subscription,) = service.log_subscriptions.subscriptions
    assert subscription.source is service.route_function("GET", "/v1/recommendations")
    assert subscription.target is service.functions[service.stream_source.function_id]
    assert (subscription.field_name, subscription.value) == ("message", "impression")


def test_a_delivered_impression_rotates_the_next_answer(service):
    user = f"rotate-{uuid.uuid4().hex[:6]}"
    ingest_ratings(service, user, ["50", "181", "100"])
    status, first = get(service, user)
    assert status == 200
    _, unchanged = get(service, user)  # the impression has not arrived: no rotation yet
    assert service.deliver_logs() == 2
    state = UserState.from_item(service.table.items[user])
    assert len(state.shown) == 20  # both answers: an entry per (item, answer chain)
    _, rotated = get(service, user)
    assert not set(items(first)) & set(items(rotated))  # rate 1, shown this moment: all pushed out
    assert set(items(unchanged)) == set(items(first))


def test_pages_through_the_api_never_repeat_even_after_a_new_event(service):
    user = f"pages-{uuid.uuid4().hex[:6]}"
    ingest_ratings(service, user, ["50", "181", "100"])
    status, page = get(service, user)
    assert status == 200
    seen_items = items(page)
    for n in range(2, 6):
        if n == 3:  # the user rates an item of page 2 before asking for page 3
            ingest_ratings(service, user, [seen_items[-1]])
        status, page = get(service, user, f"k=10&after={page['recommendation_id']}")
        assert status == 200, page
        assert page["recommendation_id"].split("-")[1] == str(n)
        assert not set(items(page)) & set(seen_items) and len(items(page)) == 10
        seen_items += items(page)
    service.deliver_logs()


@pytest.mark.parametrize(
    ("after", "status", "reason"),
    [
        ("not-an-id", 400, "must be the recommendation_id"),
        (uuid.uuid4().hex, 400, "must be the recommendation_id"),
        (new_root(int(time.time() * 1000) - 31 * 60 * 1000), 404, "expired"),
        (new_root(int(time.time() * 1000) + 60 * 60 * 1000), 404, "future"),
        (page_id(new_root(int(time.time() * 1000)), MAX_PAGES), 404, "last page"),
    ],
)
def test_bad_after_values_are_a_4xx_in_the_one_error_shape(service, after, status, reason):
    answered, body = get(service, "pager", f"k=10&after={after}")
    assert answered == status
    assert body["message"] == ("invalid request" if status == 400 else "no such page")
    assert reason in body["errors"][0]
    assert body["errors"][0].startswith("query.after: ")


def test_a_bad_delivery_is_logged_not_retried(service):
    ingest = service.functions[service.stream_source.function_id]
    assert ingest.invoke({"awslogs": {"data": "!!"}}) == {"impressions": 0}  # no exception: no retry loop
    broken = awslogs_event(["{broken", json.dumps({"message": "answered"})])
    assert ingest.invoke(broken) == {"impressions": 0}


def test_store_trouble_makes_the_delivery_retry(service, monkeypatch):
    user = f"retry-{uuid.uuid4().hex[:6]}"
    ingest_ratings(service, user, ["50"])
    _, answer = get(service, user)
    line = json.dumps(
        {"message": "impression", "kind": "impression", "recommendation_id": answer["recommendation_id"],
         "user_id": user, "route": "GET /v1/recommendations", "ts": int(time.time() * 1000),
         "items": [[i, "model"] for i in items(answer)]}
    )  # fmt: skip
    ingest = service.functions[service.stream_source.function_id]
    store = ingest.module.ingestor.store

    def unavailable(state):
        raise StoreUnavailable("throttled")

    monkeypatch.setattr(store, "put", unavailable)
    with pytest.raises(RuntimeError, match="retrying"):
        ingest.invoke(awslogs_event([line]))
    monkeypatch.undo()
    assert ingest.invoke(awslogs_event([line, line])) == {"impressions": 2}  # the retry, twice over
    assert len(UserState.from_item(service.table.items[user]).shown) == 10
    service.deliver_logs()


def test_an_impression_arriving_after_delete_me_does_not_bring_the_user_back(service):
    user = f"erased-{uuid.uuid4().hex[:6]}"
    ingest_ratings(service, user, ["50"])
    assert get(service, user)[0] == 200
    service.deliver_logs()
    assert UserState.from_item(service.table.items[user]).shown.size == 10  # the shown list is in the item
    assert get(service, user)[0] == 200  # a second answer, its impression still on the way
    status, _ = service.http("DELETE", "/v1/me", user)
    assert status == 204 and user not in service.table.items  # the whole item, shown list included
    service.deliver_logs()
    assert user not in service.table.items  # the late impression did not create a state
