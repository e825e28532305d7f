"""Catalog admin API: item writes, batch writes, deletes as tombstones, the change feed, bad input."""

from __future__ import annotations

import itertools
import json

import boto3
import pytest

from functions.catalog import app as catalog_app
from rtrec.stores.catalog import CatalogStore, latest
from tests.builders import FakeContext, http_event


@pytest.fixture
def admin(catalog_table, monkeypatch):
    clock = itertools.count(1_795_809_600_000, 1000)
    store = CatalogStore(boto3.client("dynamodb"), catalog_table.name, clock_ms=lambda: next(clock))
    monkeypatch.setattr(catalog_app, "catalog_items", store)

    def call(method: str, path: str, body=None, **kwargs) -> tuple[int, dict]:
        event = http_event(method, path, sub=None, body=body, **kwargs)
        response = catalog_app.lambda_handler(event, FakeContext("CatalogFunction"))
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else {}

    call.store = store
    return call


def test_put_get_and_delete_an_item(admin):
    status, body = admin("PUT", "/v1/items/sku-1", {"categories": ["Tents"], "attributes": {"price": 99}})
    assert status == 200 and body["item"]["categories"] == ["Tents"]
    assert admin("GET", "/v1/items/sku-1")[1]["item"]["attributes"] == {"price": 99.0}
    assert admin("DELETE", "/v1/items/sku-1")[0] == 204
    assert admin("DELETE", "/v1/items/sku-1")[0] == 204  # idempotent
    assert admin("GET", "/v1/items/sku-1")[0] == 404


def test_batch_writes_valid_items_and_lists_the_rest(admin):
    items = [{"item_id": f"i{n}", "categories": ["a"]} for n in range(30)]
    items += [{"item_id": "bad", "available": "yes"}, {"item_id": "i0"}]
    status, body = admin("POST", "/v1/items/batch", {"items": items})
    assert status == 200 and body["written"] == 30
    assert [r["index"] for r in body["rejected"]] == [30, 31]


def test_the_change_feed_carries_writes_and_tombstones_in_order(admin):
    admin("PUT", "/v1/items/a", {"categories": ["x"]})
    admin("PUT", "/v1/items/b", {"categories": ["y"]})
    first = admin.store.changes_since(0)
    watermark = max(c.updated_at for c in first)
    admin("PUT", "/v1/items/a", {"categories": ["x"], "available": False})
    admin("DELETE", "/v1/items/b")
    changes = latest(admin.store.changes_since(watermark))
    assert changes["a"].item.available is False and not changes["a"].deleted
    assert changes["b"].deleted and changes["b"].item.available is False


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/v1/items/x", {"categories": "not-a-list"}, 400),
        ("PUT", "/v1/items/x", {"item_id": "y"}, 400),
        ("PUT", "/v1/items/x", None, 400),
        ("POST", "/v1/items/batch", {"items": []}, 400),
        ("POST", "/v1/items/batch", {"items": [{}] * 101}, 400),
        ("GET", "/v1/items/" + "x" * 65, None, 400),
        ("PATCH", "/v1/items/x", None, 404),
    ],
)
def test_bad_admin_requests_get_a_4xx_in_the_one_shape(admin, method, path, body, status):
    answer, payload = admin(method, path, body)
    assert answer == status and set(payload) == {"message", "errors"}
