"""The in-process harness the replay evaluation uses: the real template and handlers, moto in memory."""

from __future__ import annotations

import json
import time

import pytest

from evaluation.replay import InMemoryStateTable
from infra.local.inprocess import InProcessService
from rtrec.stores.user_state import UserStateStore
from tests.conftest import MODEL_DIR, REPO_ROOT

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")

OVERRIDES = {"EXPLORATION_SHARE": "0", "PER_USER_REQUEST_RATE": "0", "POWERTOOLS_LOG_LEVEL": "ERROR"}


@pytest.fixture(scope="module")
def service():
    with InProcessService(REPO_ROOT / "template.yaml", OVERRIDES, drop_metric_lines=True) as running:
        yield running


def ratings(user: str, items: list[str]) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    return [
        (user, json.dumps({"user_id": user, "event_id": f"{user}-{item}", "item_id": item, "type": "rating",
                           "value": 5, "ts": now + n}).encode())
        for n, item in enumerate(items)
    ]  # fmt: skip


def test_functions_get_the_template_environment_under_the_callers_overrides(service):
    recommend = service.route_function("GET", "/v1/recommendations")
    assert recommend.environment["EXPLORATION_SHARE"] == "0"  # the template says 0.1
    assert recommend.environment["MODEL_DIR"] == str(MODEL_DIR)  # /opt/model, mapped to the layer
    assert service.stream_source is not None and service.batch_size == service.stream_source.batch_size


@pytest.mark.parametrize("in_memory", [False, True], ids=["moto", "in-memory table"])
def test_ingested_events_change_the_next_answer(service, in_memory):
    user = f"inprocess-{in_memory}"
    table = None
    if in_memory:  # as `python -m evaluation.replay` does by default
        name = service.functions[service.stream_source.function_id].environment["USER_STATE_TABLE"]
        table = InMemoryStateTable(name)
        service.replace_user_state_store(UserStateStore(table))
    status, before = service.http("GET", "/v1/recommendations", user, query="k=10")
    assert status == 200
    consumed = [item["item_id"] for item in before["items"][:3]]
    assert service.ingest(ratings(user, consumed)).get("batchItemFailures") == []
    status, after = service.http("GET", "/v1/recommendations", user, query="k=10")
    assert status == 200 and not set(consumed) & {item["item_id"] for item in after["items"]}
    if table is not None:  # both handlers used the replacement store
        assert table.items[user]["version"] >= 1
