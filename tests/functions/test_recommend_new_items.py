"""Items written to the catalog table after training, through the real recommend handler: retrieved with
the model's items, given the exploration slot first, and bound by the request's filters."""

from __future__ import annotations

import itertools
import json

import boto3
import numpy as np
import pytest

from functions.recommend import app as recommend_app
from rtrec.catalog import CatalogItem
from rtrec.live_catalog import LiveCatalog
from rtrec.recommender import RecommenderConfig
from rtrec.state import Interaction, UserState, item_key
from rtrec.stores.catalog import CatalogStore
from rtrec.stores.user_state import UserStateStore
from tests.builders import FakeContext, http_event

NOW = 1_795_809_600_000


@pytest.fixture
def shop(user_state_table, catalog_table, monkeypatch):
    """The real handler over a catalog table the test writes; random exploration off."""
    model = recommend_app.recommender.catalog
    clock = itertools.count(NOW, 1000)
    store = CatalogStore(boto3.client("dynamodb"), catalog_table.name, clock_ms=lambda: next(clock))
    monkeypatch.setattr(recommend_app.recommender, "live", LiveCatalog(model, store, refresh_s=0.0))
    monkeypatch.setattr(
        recommend_app.recommender, "config", RecommenderConfig(exploration_share=0.1, exploration_rate=0.0)
    )
    monkeypatch.setattr(
        recommend_app,
        "user_states",
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
    )
    history = model.item_ids[:20]
    recent = [Interaction(i, "rating", NOW - 100_000 + n, f"e{n}", 5.0) for n, i in enumerate(history)]
    seen = np.array([item_key(i) for i in history], dtype="<u4")
    user_state_table.put_item(Item=UserState("reader", version=1, recent=recent, seen=seen).to_item())

    def get(**query) -> dict:
        event = http_event(
            "GET", "/v1/recommendations", sub="reader", query={k: str(v) for k, v in query.items()}
        )
        response = recommend_app.lambda_handler(event, FakeContext())
        assert response["statusCode"] == 200, response["body"]
        return json.loads(response["body"])

    get.store = store
    return get


def test_a_new_item_is_scored_and_takes_the_exploration_slot(shop):
    before = shop(k=10)
    assert {item["reason"] for item in before["items"]} == {"model"}  # nothing new: no exploration
    shop.store.put_many([CatalogItem(f"arrival-{n}", ("Drama", "Romance")) for n in range(3)])
    after = shop(k=10)
    new = [item for item in after["items"] if item["item_id"].startswith("arrival-")]
    assert len(after["items"]) == 10 and after["items"][0]["reason"] == "model"
    assert [item["reason"] for item in new].count("new_item") == 1
    assert all(np.isfinite(item["score"]) and item["categories"] == ["Drama", "Romance"] for item in new)


def test_new_items_obey_the_request_filters(shop):
    shop.store.put_many(
        [
            CatalogItem("cheap-drama", ("Drama",), attributes={"price": 5.0}),
            CatalogItem("dear-drama", ("Drama",), attributes={"price": 90.0}),
            CatalogItem("cheap-horror", ("Horror",), attributes={"price": 5.0}),
            CatalogItem("withdrawn", ("Drama",), available=False),
        ]
    )
    shown = {item["item_id"] for item in shop(k=50)["items"]}
    assert "withdrawn" not in shown
    cheap = {item["item_id"] for item in shop(k=10, filter="price<=10")["items"]}
    assert cheap == {"cheap-drama", "cheap-horror"}  # model items have no price
    dramas = shop(k=10, category="Drama", filter="price<=10")["items"]
    assert [item["item_id"] for item in dramas] == ["cheap-drama"]
