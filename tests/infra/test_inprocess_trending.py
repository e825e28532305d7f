"""The template's TrendingTable in the local stack: moto's CloudFormation makes it, the functions get its
name, and an event through the real ingest handler reaches a new user's answer from the real recommend
handler within the refresh interval."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from infra.local.inprocess import InProcessService
from tests.conftest import MODEL_DIR, REPO_ROOT

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")

OVERRIDES = {
    "TRENDING_REFRESH_S": "1",
    "EXPLORATION_SHARE": "0",
    "PER_USER_REQUEST_RATE": "0",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}


def test_purchases_through_the_stream_lift_an_item_for_new_users():
    with InProcessService(REPO_ROOT / "template.yaml", OVERRIDES, drop_metric_lines=True) as service:
        ingest = service.functions[service.stream_source.function_id]
        recommend = service.route_function("GET", "/v1/recommendations")
        table = ingest.environment["TRENDING_TABLE"]
        assert table == recommend.environment["TRENDING_TABLE"]
        assert table in boto3.client("dynamodb").list_tables()["TableNames"]

        status, before = service.http("GET", "/v1/recommendations", "newcomer", "k=5")
        catalog = recommend.module.recommender.catalog
        least = catalog.item_ids[int(catalog.popularity.argmin())]
        assert status == 200 and least not in [i["item_id"] for i in before["items"]]

        now = int(time.time() * 1000)
        records = [
            (f"buyer-{n}", json.dumps({"user_id": f"buyer-{n}", "event_id": f"e{n}", "item_id": least,
                                       "type": "purchase", "ts": now - 1000}).encode())
            for n in range(20)
        ]  # fmt: skip
        assert service.ingest(records) == {"batchItemFailures": []}
        time.sleep(1.1)  # the refresh interval (TRENDING_REFRESH_S) passes
        status, after = service.http("GET", "/v1/recommendations", "newcomer-2", "k=5")
        assert status == 200 and after["items"][0]["item_id"] == least
