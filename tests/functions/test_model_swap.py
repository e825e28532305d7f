"""Hot swap through the registry (moto S3 + SSM): the real handlers follow the pointer without a redeploy.

The handler modules are imported once, as in a warm container; each test wires the registry into them
with the functions' own `follow_registry` (the test environment, like the local stack, runs layer only).
The pointer's max age is 1 s (the smallest allowed), so a test waits a little over a second for a move.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest

from functions.ingest import app as ingest_app
from functions.recommend import app as recommend_app
from rtrec.ingest import BatchIngestor
from rtrec.registry import BOOTSTRAP, publish, rollback, validate_artifact
from rtrec.settings import IngestSettings, RecommendSettings, SettingsError
from rtrec.state import Interaction, UserState, item_key
from rtrec.stores.dead_letters import DeadLetterQueue
from rtrec.stores.user_state import UserStateStore
from tests.builders import FakeContext, event_record, http_event

MODEL_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "model"
LAYER_VERSION = json.loads((MODEL_DIR / "metadata.json").read_text())["version"]
BUCKET = "test-model-registry"
POINTER = "/rtrec/test/model-pointer"
RENAMED = "Action & Adventure"  # the next version's name for the first real category ("Action")


def variant(root: Path, version: str, *, vocabulary_change: bool = False) -> Path:
    """The shipped artifact under another version; with `vocabulary_change`, items 1..3 get new ids and
    category 1 a new name (same shapes: it still serves)."""
    target = root / version
    shutil.copytree(MODEL_DIR, target)
    metadata = json.loads((target / "metadata.json").read_text())
    metadata["version"] = version
    (target / "metadata.json").write_text(json.dumps(metadata))
    if vocabulary_change:
        items = json.loads((target / "items.json").read_text())
        items["item_ids"][:3] = [f"new-{i}" for i in items["item_ids"][:3]]
        items["categories" if "categories" in items else "genres"][1] = RENAMED
        (target / "items.json").write_text(json.dumps(items))
    return target


def corrupt(root: Path, version: str, how: str) -> Path:
    target = variant(root, version)
    if how == "truncated model":
        (target / "model.tflite").write_bytes((target / "model.tflite").read_bytes()[:4096])
    else:  # an items table with one item more than the embeddings
        items = json.loads((target / "items.json").read_text())
        items["item_ids"].append("one-too-many")
        items["category_ids" if "category_ids" in items else "genre_ids"].append([1])
        items["popularity"].append(0.0)
        (target / "items.json").write_text(json.dumps(items))
    return target


def registry_env(cache_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MODEL_BUCKET": BUCKET,
        "MODEL_POINTER": POINTER,
        "MODEL_POINTER_MAX_AGE_S": "1",
        "MODEL_CACHE_DIR": str(cache_dir),
    }


def next_look() -> None:
    """Past the pointer's max age: Powertools' cache and the watcher's interval have both run out."""
    time.sleep(1.1)


@dataclass
class Registry:
    s3: object
    ssm: object
    root: Path

    def publish(self, artifact: Path, *, checked: bool = True) -> str:
        validate = validate_artifact if checked else None
        return publish(artifact, BUCKET, self.s3, self.ssm, POINTER, validate=validate).version

    def rollback(self, version: str) -> None:
        rollback(version, BUCKET, self.s3, self.ssm, POINTER)


@pytest.fixture
def registry(aws, tmp_path):
    s3, ssm = boto3.client("s3"), boto3.client("ssm")
    s3.create_bucket(Bucket=BUCKET)
    ssm.put_parameter(Name=POINTER, Value=BOOTSTRAP, Type="String")
    return Registry(s3, ssm, tmp_path / "artifacts")


@pytest.fixture
def api(registry, user_state_table, catalog_table, tmp_path, monkeypatch):
    """The real recommend handler, following the registry; the user `u` has a history."""
    settings = RecommendSettings.from_env(registry_env(tmp_path / "cache"))
    assert settings.registry is not None
    monkeypatch.setattr(recommend_app, "settings", settings)
    # Restored after the test: the swap replaces these module globals.
    monkeypatch.setattr(recommend_app, "recommender", recommend_app.recommender)
    monkeypatch.setattr(recommend_app, "_CATEGORY_BY_LOWER", recommend_app._CATEGORY_BY_LOWER)
    monkeypatch.setattr(
        recommend_app,
        "user_states",
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
    )
    monkeypatch.setattr(recommend_app, "model_updates", recommend_app.follow_registry(settings.registry))
    history = ["1", "2", "3", "50", "172", "181", "98", "127"]  # 1..3 are renamed by the vocabulary change
    recent = [Interaction(i, "click", 1_795_800_000_000 + n, f"e{n}") for n, i in enumerate(history)]
    seen = np.array([item_key(i) for i in history], dtype="<u4")
    user_state_table.put_item(Item=UserState(user_id="u", version=1, recent=recent, seen=seen).to_item())

    def call(method: str, path: str, **kwargs) -> tuple[int, dict]:
        response = recommend_app.lambda_handler(
            http_event(method, path, sub="u", **kwargs), FakeContext("RecommendFunction", 1024)
        )
        return response["statusCode"], json.loads(response.get("body") or "{}")

    return call


def metric_names(output: str) -> set[str]:
    names: set[str] = set()
    for line in output.splitlines():
        if line.startswith("{") and "_aws" in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names |= {m["Name"] for m in directive["Metrics"]}
    return names


def test_the_recommend_handler_answers_with_the_new_version_once_the_pointer_moves(api, registry):
    module = recommend_app
    status, body = api("GET", "/v1/recommendations", query={"k": "10"})
    assert status == 200 and body["model_version"] == LAYER_VERSION and body["source"] == "model"
    registry.publish(variant(registry.root, "v2", vocabulary_change=True))
    next_look()
    status, body = api("GET", "/v1/recommendations", query={"k": "10"})
    assert status == 200 and body["model_version"] == "v2" and body["source"] == "model"
    assert not body["degraded"]
    assert recommend_app is module and recommend_app.recommender.model_version == "v2"  # no re-import
    # Every route names the version that answered.
    assert api("GET", "/v1/interests")[1]["model_version"] == "v2"
    assert api("GET", "/v1/items/50/similar", query={"k": "5"})[1]["model_version"] == "v2"
    status, ranked = api("POST", "/v1/recommendations/rank", body={"item_ids": ["1", "new-1", "50"]})
    assert status == 200 and ranked["model_version"] == "v2"
    assert ranked["unknown_item_ids"] == ["1"]  # an id the new version does not know is reported, not fatal


def test_the_api_tolerates_the_vocabulary_change(api, registry):
    registry.publish(variant(registry.root, "v2", vocabulary_change=True))
    next_look()
    status, body = api("GET", "/v1/interests")
    assert status == 200 and body["model_version"] == "v2"
    assert RENAMED in body["interests"] and "Action" not in body["interests"]
    # The category names follow the new version (any case); the old name is no error, it matches nothing.
    for query in ({"category": RENAMED}, {"genre": RENAMED.lower()}):
        status, body = api("GET", "/v1/recommendations", query={"k": "5", **query})
        assert status == 200 and body["items"] and all(RENAMED in i["categories"] for i in body["items"])
    status, body = api("GET", "/v1/recommendations", query={"k": "5", "category": "Action"})
    assert status == 200 and body["items"] == []
    # The user's history holds items the new version does not know (1, 2, 3): they are left out.
    status, body = api("GET", "/v1/recommendations", query={"k": "10"})
    assert status == 200 and body["source"] == "model" and not body["degraded"]


@pytest.mark.parametrize("how", ["truncated model", "items.json with another item count"])
def test_a_corrupt_version_is_refused_and_the_loaded_one_keeps_answering(api, registry, capsys, caplog, how):
    registry.publish(variant(registry.root, "v2"))
    next_look()
    assert api("GET", "/v1/recommendations")[1]["model_version"] == "v2"
    capsys.readouterr()
    registry.publish(corrupt(registry.root, "v3-broken", how), checked=False)
    next_look()
    status, body = api("GET", "/v1/recommendations", query={"k": "10"})
    assert status == 200 and body["model_version"] == "v2" and not body["degraded"]
    assert "ModelLoadFailures" in metric_names(capsys.readouterr().out)
    assert "model version v3-broken failed to load; keeping v2" in caplog.text
    next_look()  # not retried at every look: no second download, no second metric
    status, body = api("GET", "/v1/recommendations")
    assert status == 200 and body["model_version"] == "v2"
    assert "ModelLoadFailures" not in metric_names(capsys.readouterr().out)


def test_rollback_moves_the_answers_back(api, registry):
    registry.publish(variant(registry.root, "v2"))
    registry.publish(variant(registry.root, "v3"))
    next_look()
    assert api("GET", "/v1/recommendations")[1]["model_version"] == "v3"
    registry.rollback("v2")
    next_look()
    assert api("GET", "/v1/recommendations")[1]["model_version"] == "v2"
    registry.rollback(BOOTSTRAP)  # the layer's model
    next_look()
    assert api("GET", "/v1/recommendations")[1]["model_version"] == LAYER_VERSION


def test_an_unreachable_registry_keeps_the_layer_model(api, registry, capsys):
    registry.ssm.delete_parameter(Name=POINTER)  # missing (as in the local stack): nothing to follow, quietly
    assert api("GET", "/v1/recommendations")[1]["model_version"] == LAYER_VERSION
    assert not {"ModelPointerReadFailures", "ModelLoadFailures"} & metric_names(capsys.readouterr().out)
    registry.ssm.put_parameter(Name=POINTER, Value="v-not-published", Type="String")
    next_look()
    status, body = api("GET", "/v1/recommendations")
    assert status == 200 and body["model_version"] == LAYER_VERSION
    assert "ModelLoadFailures" in metric_names(capsys.readouterr().out)


def test_the_ingest_function_folds_with_the_new_catalog(registry, user_state_table, tmp_path, monkeypatch):
    settings = IngestSettings.from_env(registry_env(tmp_path / "cache"))
    sqs = boto3.client("sqs")
    ingestor = BatchIngestor(
        store=UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
        dead_letters=DeadLetterQueue(sqs, sqs.create_queue(QueueName="test-dlq")["QueueUrl"]),
        catalog=ingest_app.load_catalog(str(MODEL_DIR)),
    )
    monkeypatch.setattr(ingest_app, "ingestor", ingestor)
    monkeypatch.setattr(
        ingest_app, "model_updates", ingest_app.follow_registry(settings.registry, str(MODEL_DIR))
    )
    store = UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name)

    def send(user_id: str, item_id: str) -> dict:
        record = event_record(user_id, uuid.uuid4().hex, int(time.time() * 1000), item_id, "click")
        assert ingest_app.lambda_handler({"Records": [record]}, FakeContext("IngestFunction")) == {
            "batchItemFailures": []
        }
        state = store.get(user_id)
        assert state is not None
        return state.interests

    assert "Action" in send("before", "50")
    registry.publish(variant(registry.root, "v2", vocabulary_change=True))
    next_look()
    after = send("after", "50")
    assert RENAMED in after and "Action" not in after
    assert ingest_app.ingestor.catalog.index_of("new-1") == 1
    assert send("fresh", "1") == {}  # an id the new catalog does not know: applied, no interests, no error
    assert ingest_app.model_updates.loaded_version == "v2"


def test_registry_settings_are_both_or_neither(tmp_path):
    env = registry_env(tmp_path)
    assert RecommendSettings.from_env({**env, "MODEL_BUCKET": "", "MODEL_POINTER": ""}).registry is None
    with pytest.raises(SettingsError, match="MODEL_BUCKET"):
        RecommendSettings.from_env({**env, "MODEL_BUCKET": ""})
    with pytest.raises(SettingsError, match="MODEL_POINTER_MAX_AGE_S"):
        IngestSettings.from_env({**env, "MODEL_POINTER_MAX_AGE_S": "0"})
    assert IngestSettings.from_env(env).registry.pointer_max_age_s == 1
