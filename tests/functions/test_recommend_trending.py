"""The recommendations API with live popularity: cold users, the popular fallback and rank follow the
trending table, refreshed on an interval (never per request), and a read failure keeps the last vector."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest

from functions.recommend import app as recommend_app
from rtrec.stores.errors import StoreUnavailable
from rtrec.stores.trending import TrendingTable
from rtrec.trending import LiveTrending, TrendingConfig
from tests.builders import FakeContext, create_trending_table, http_event

NOW = 1_795_809_600_000
CONFIG = TrendingConfig(bucket_s=3600, half_life_s=6 * 3600, window_buckets=24, shards=2, prior_events=50)
BUCKET = CONFIG.bucket_of(NOW)


class Clock:
    def __init__(self) -> None:
        self.seconds = 1000.0


@pytest.fixture
def live(aws, monkeypatch):
    """The real handler following a trending table in moto (fixed clocks); returns helpers."""
    dynamodb = boto3.client("dynamodb")
    create_trending_table("test-trending")
    table = TrendingTable(dynamodb, "test-trending", CONFIG.shards)
    clock = Clock()
    follower = LiveTrending(
        table, CONFIG, refresh_s=60, clock_ms=lambda: NOW + 60_000, monotonic=lambda: clock.seconds
    )
    monkeypatch.setattr(recommend_app, "trending", follower)
    monkeypatch.setattr(recommend_app.recommender, "trending", follower)
    monkeypatch.setattr(recommend_app.user_states, "get", lambda user_id, consistent=True: None)
    return table, clock, follower


def call(method: str, path: str, **kwargs) -> tuple[int, dict]:
    response = recommend_app.lambda_handler(http_event(method, path, sub="newcomer", **kwargs), FakeContext())
    return response["statusCode"], json.loads(response["body"])


def ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def static_order() -> list[str]:
    catalog = recommend_app.recommender.catalog
    return [catalog.item_ids[i] for i in np.argsort(-catalog.popularity, kind="stable")]


def test_a_new_user_gets_what_is_trending_not_the_training_splits_favourites(live):
    table, _, _ = live
    least = static_order()[-1]  # nobody rated it in the training split
    table.add(BUCKET, least, 5_000.0, CONFIG.expires_at(BUCKET))
    status, body = call("GET", "/v1/recommendations", query={"k": "10"})
    assert status == 200 and body["source"] == "popular" and not body["degraded"]
    assert ids(body)[0] == least
    # The rest still follows the prior: the static favourites fill the list.
    assert static_order()[0] in ids(body)


def test_rank_orders_a_cold_users_candidates_by_live_popularity(live):
    table, _, _ = live
    first, last = static_order()[0], static_order()[-1]
    table.add(BUCKET, last, 5_000.0, CONFIG.expires_at(BUCKET))
    status, body = call("POST", "/v1/recommendations/rank", body={"item_ids": [first, last]})
    assert status == 200 and ids(body) == [last, first]


def test_the_table_is_read_once_per_refresh_interval(live):
    table, clock, follower = live
    items = static_order()
    call("GET", "/v1/recommendations", query={"k": "5"})
    table.add(BUCKET, items[-1], 5_000.0, CONFIG.expires_at(BUCKET))
    _, before = call("GET", "/v1/recommendations", query={"k": "5"})
    assert items[-1] not in ids(before) and follower.generation == 1  # not due yet
    clock.seconds += 61
    _, after = call("GET", "/v1/recommendations", query={"k": "5"})
    assert ids(after)[0] == items[-1] and follower.generation == 2


def test_a_failed_read_keeps_the_last_vector_and_is_counted(live, monkeypatch, capsys):
    table, clock, follower = live
    items = static_order()
    table.add(BUCKET, items[-1], 5_000.0, CONFIG.expires_at(BUCKET))
    _, first = call("GET", "/v1/recommendations", query={"k": "5"})
    capsys.readouterr()

    def down(buckets):
        raise StoreUnavailable("Query: ThrottlingException")

    monkeypatch.setattr(follower.source, "read", down)
    clock.seconds += 61
    status, body = call("GET", "/v1/recommendations", query={"k": "5"})
    assert status == 200 and ids(body) == ids(first) and not body["degraded"]
    metrics = json.loads(
        next(line for line in capsys.readouterr().out.splitlines() if "CloudWatchMetrics" in line)
    )
    assert metrics["TrendingReadFailures"] == [1.0]


def test_without_trending_the_artifacts_counts_answer(live, monkeypatch):
    table, _, _ = live
    table.add(BUCKET, static_order()[-1], 5_000.0, CONFIG.expires_at(BUCKET))
    monkeypatch.setattr(recommend_app, "trending", None)
    monkeypatch.setattr(recommend_app.recommender, "trending", None)
    _, body = call("GET", "/v1/recommendations", query={"k": "10"})
    assert static_order()[-1] not in ids(body)
