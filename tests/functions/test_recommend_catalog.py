"""The recommendations API over a live catalog: availability, category and attribute filters,
promotions of new items, and the catalog table's changes seen within the refresh interval."""

from __future__ import annotations

import itertools
import json

import boto3
import numpy as np
import pytest

from functions.recommend import app as recommend_app
from rtrec.catalog import CatalogItem, ItemFilter, parse_filter
from rtrec.live_catalog import LiveCatalog
from rtrec.recommender import RecommenderConfig
from rtrec.state import Interaction, UserState, item_key
from rtrec.stores.catalog import CatalogStore
from rtrec.stores.user_state import UserStateStore
from tests.builders import FakeContext, http_event

NOW = 1_795_809_600_000


@pytest.fixture
def shop(user_state_table, catalog_table, monkeypatch):
    """The real handler over a catalog table the test writes, refreshed on every request."""
    model = recommend_app.recommender.catalog
    clock = itertools.count(NOW, 1000)
    store = CatalogStore(boto3.client("dynamodb"), catalog_table.name, clock_ms=lambda: next(clock))
    live = LiveCatalog(model, store, refresh_s=0.0)
    monkeypatch.setattr(recommend_app.recommender, "live", live)
    monkeypatch.setattr(
        recommend_app,
        "user_states",
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
    )
    history = model.item_ids[:20]
    recent = [Interaction(i, "rating", NOW - 100_000 + n, f"e{n}", 5.0) for n, i in enumerate(history)]
    seen = np.array([item_key(i) for i in history], dtype="<u4")
    user_state_table.put_item(Item=UserState("shopper", version=1, recent=recent, seen=seen).to_item())

    def get(**query) -> tuple[int, dict]:
        event = http_event(
            "GET", "/v1/recommendations", sub="shopper", query={k: str(v) for k, v in query.items()}
        )
        response = recommend_app.lambda_handler(event, FakeContext())
        return response["statusCode"], json.loads(response["body"])

    get.store, get.model, get.live = store, model, live
    return get


def ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_an_item_made_unavailable_leaves_the_next_answer(shop):
    status, before = shop(k=10)
    assert status == 200 and before["source"] == "model"
    gone = ids(before)[:3]
    shop.store.put_many([CatalogItem(i, available=False) for i in gone])
    _, after = shop(k=10)
    assert not set(gone) & set(ids(after))
    shop.store.delete(ids(after)[0])
    _, again = shop(k=10)
    assert ids(after)[0] not in ids(again)


def test_category_and_attribute_filters_hold_for_every_item(shop):
    model = shop.model
    priced = [
        CatalogItem(i, ("Budget",), attributes={"price": float(n % 100)})
        for n, i in enumerate(model.item_ids)
    ]
    shop.store.put_many(priced)
    status, body = shop(k=20, filter="price<=10", category="Budget")
    assert status == 200 and body["items"]
    prices = {item.item_id: item.attributes["price"] for item in priced}
    assert all(prices[i] <= 10 for i in ids(body))
    assert all(item["categories"] == ["Budget"] for item in body["items"])


@pytest.mark.parametrize("expression", ["price<=cheap", "=5", "price~5"])
def test_a_filter_it_cannot_parse_is_a_400(shop, expression):
    status, body = shop(filter=expression)
    assert status == 400 and body["errors"][0].startswith("query.filter")


def test_promotions_surface_new_items_the_model_never_saw(shop, monkeypatch):
    new = [CatalogItem(f"new-{n}", ("New arrivals",), created_at=NOW + n) for n in range(5)]
    shop.store.put_many(new)
    config = RecommenderConfig(
        exploration_share=0.0,
        promotion_share=0.2,
        promotion_filter=ItemFilter(frozenset({"New arrivals"}), parse_filter("")),
    )
    monkeypatch.setattr(recommend_app.recommender, "config", config)
    status, body = shop(k=10)
    promoted = [item for item in body["items"] if item["reason"] == "promoted"]
    assert status == 200 and len(body["items"]) == 10
    assert [item["item_id"] for item in promoted] == ["new-4", "new-3"]  # newest first
    assert body["items"][0]["reason"] == "model"  # the first slot stays organic


def test_a_catalog_table_outage_keeps_serving_what_is_known(shop, monkeypatch):
    shop.store.put(CatalogItem(shop.model.item_ids[30], available=False))
    shop(k=5)

    def unreachable(updated_after_ms):
        raise ConnectionError("no route to the table")

    monkeypatch.setattr(shop.live.source, "changes_since", unreachable)
    status, body = shop(k=50)
    assert status == 200 and shop.model.item_ids[30] not in ids(body)
    assert shop.live.refresh_failures >= 1


def similar(item_id: str, **query) -> tuple[int, dict]:
    event = http_event(
        "GET", f"/v1/items/{item_id}/similar", sub="shopper", query={k: str(v) for k, v in query.items()}
    )
    event["pathParameters"] = {"item_id": item_id}
    event["routeKey"] = "GET /v1/items/{item_id}/similar"
    response = recommend_app.lambda_handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def test_similar_items_come_from_the_item_vectors_with_the_same_filters(shop):
    model = shop.model
    status, body = similar(model.item_ids[0], k=5)
    assert status == 200 and len(body["items"]) == 5
    assert all(item["reason"] == "similar" for item in body["items"])
    assert model.item_ids[0] not in ids(body)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    shop.store.put(CatalogItem(ids(body)[0], available=False))
    assert ids(body)[0] not in ids(similar(model.item_ids[0], k=5)[1])
    assert similar("no-such-item")[0] == 404
    assert similar(model.item_ids[0], filter="price<")[0] == 400


def test_a_new_item_gets_neighbours_from_its_categories(shop):
    shop.store.put(CatalogItem("brand-new-western", ("Western",), created_at=NOW))
    status, body = similar("brand-new-western", k=10)
    assert status == 200 and len(body["items"]) == 10
    westerns = sum("Western" in item["categories"] for item in body["items"])
    assert westerns >= 5, body["items"]
