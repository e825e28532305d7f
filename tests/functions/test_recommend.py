"""Recommendations API handler: routes, validation, auth, CORS, real-time state, degraded mode.

Runs the real handler against the real store on moto and the real model artifact
(layers/model/model); only the degraded-mode tests swap in a broken scorer.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest

from dataio.movielens import GENRES
from functions.ingest import app as ingest_app
from functions.recommend import app as recommend_app
from rtrec.ingest import BatchIngestor
from rtrec.recommender import Recommender
from rtrec.settings import RecommendSettings
from rtrec.state import Interaction, UserState, item_key
from rtrec.stores.dead_letters import DeadLetterQueue
from rtrec.stores.user_state import UserStateStore
from tests import builders
from tests.builders import FakeContext, event_record

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
ALLOWED_ORIGIN = "https://app.example.com"


def http_event(method: str, path: str, **kwargs) -> dict:
    return builders.http_event(method, path, **kwargs)


def seed_state(table, user_id: str, item_ids: list[str]) -> None:
    """Store a state item directly (the ingest path has its own tests; this one sets up a history)."""
    recent = [Interaction(i, "click", 1_795_800_000_000 + n, f"e{n}") for n, i in enumerate(item_ids)]
    seen = np.array([item_key(i) for i in dict.fromkeys(item_ids)], dtype="<u4")
    state = UserState(user_id=user_id, version=1, recent=recent, seen=seen)
    table.put_item(Item=state.to_item())


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict


@pytest.fixture
def api(user_state_table, monkeypatch):
    """Calls the real handler with the store bound to the moto table."""
    monkeypatch.setattr(
        recommend_app,
        "user_states",
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
    )

    def call(method: str, path: str, **kwargs) -> Answer:
        response = recommend_app.lambda_handler(
            http_event(method, path, **kwargs), FakeContext("RecommendFunction", 1024)
        )
        body = json.loads(response["body"]) if response.get("body") else {}
        return Answer(response["statusCode"], body, response.get("headers") or {})

    return call


@pytest.fixture
def ingest_events(user_state_table, monkeypatch):
    """Feeds events through the real ingest handler (Kinesis records -> fold -> UserState on moto)."""
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="test-dlq")["QueueUrl"]
    ingestor = BatchIngestor(
        store=UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
        dead_letters=DeadLetterQueue(sqs, queue_url),
        catalog=recommend_app.recommender.catalog,
    )
    monkeypatch.setattr(ingest_app, "ingestor", ingestor)

    def send(user_id: str, events: list[tuple[str, str, float | None]]) -> None:
        now = int(time.time() * 1000)
        records = []
        for n, (item_id, kind, value) in enumerate(events):
            fields = {} if value is None else {"value": value}
            records.append(
                event_record(user_id, uuid.uuid4().hex, now - len(events) + n, item_id, kind, **fields)
            )
        response = ingest_app.lambda_handler({"Records": records}, FakeContext("IngestFunction"))
        assert response == {"batchItemFailures": []}

    return send


def text(answer: Answer) -> str:
    """The error's message and details, for assertions on what it says."""
    return " ".join([answer.body["message"], *answer.body["errors"]])


def item_ids(answer: Answer) -> list[str]:
    return [item["item_id"] for item in answer.body["items"]]


def items_of_genre(genre: str, count: int) -> list[str]:
    catalog = recommend_app.recommender.catalog
    return [i for i in catalog.item_ids if genre in catalog.categories_of(i)][:count]


def test_ingested_events_change_the_very_next_answer_and_remove_seen_items(api, ingest_events):
    before = api("GET", "/v1/recommendations", query={"k": "20"})
    prior = api("GET", "/v1/interests").body["interests"]
    assert before.body["source"] == "popular"

    horror = items_of_genre("Horror", 8)
    ingest_events("user-a", [(item, "rating", 5) for item in horror])
    after = api("GET", "/v1/recommendations", query={"k": "20"})
    assert after.status == 200 and after.body["source"] == "model" and not after.body["degraded"]
    assert item_ids(after) != item_ids(before)
    assert not set(horror) & set(item_ids(after))
    assert {item["reason"] for item in after.body["items"]} <= {"model", "explore"}
    horror_count = [sum("Horror" in i["categories"] for i in a.body["items"]) for a in (before, after)]
    assert horror_count[1] > horror_count[0]
    interests = api("GET", "/v1/interests").body
    assert interests["source"] == "model" and interests["interests"]["Horror"] > prior["Horror"]

    clicked = [item["item_id"] for item in after.body["items"]][:3]
    ingest_events("user-a", [(item, "click", None) for item in clicked])
    again = api("GET", "/v1/recommendations", query={"k": "20"})
    assert not (set(clicked) | set(horror)) & set(item_ids(again))


def test_a_user_whose_items_are_all_unknown_still_gets_an_answer(api, ingest_events):
    ingest_events("user-a", [(f"new-item-{n}", "purchase", None) for n in range(5)])
    answer = api("GET", "/v1/recommendations", query={"k": "5"})
    assert answer.status == 200 and len(answer.body["items"]) == 5
    assert answer.body["source"] == "cold_start" and not answer.body["degraded"]
    assert {item["reason"] for item in answer.body["items"]} == {"cold_start"}
    rank = api("POST", "/v1/recommendations/rank", body={"item_ids": ["new-item-1", "50", "1"]})
    assert rank.status == 200 and rank.body["unknown_item_ids"] == ["new-item-1"]


def test_a_token_reads_only_its_own_users_state_and_nothing_writes_it(api, ingest_events, user_state_table):
    horror = items_of_genre("Horror", 6)
    ingest_events("user-b", [(item, "rating", 5) for item in horror])
    stored_b = user_state_table.get_item(Key={"user_id": "user-b"})["Item"]

    as_a = api("GET", "/v1/recommendations", sub="user-a", query={"k": "30"})
    assert as_a.body["source"] == "popular"  # A has no state; B's history is not A's
    assert api("GET", "/v1/interests", sub="user-a").body["source"] == "popular"
    as_b = api("GET", "/v1/recommendations", sub="user-b", query={"k": "30"})
    assert as_b.body["source"] == "model" and not set(horror) & set(item_ids(as_b))

    assert api("GET", "/v1/recommendations", sub="user-a", query={"user_id": "user-b"}).status == 400
    assert api("GET", "/v1/interests", sub="user-a", query={"sub": "user-b"}).status == 400
    naming_b = {"item_ids": horror, "user_id": "user-b"}
    assert api("POST", "/v1/recommendations/rank", sub="user-a", body=naming_b).status == 400

    assert user_state_table.get_item(Key={"user_id": "user-b"})["Item"] == stored_b
    assert "Item" not in user_state_table.get_item(Key={"user_id": "user-a"})


def test_the_handler_module_does_not_import_pydantic_and_leaves_the_gc_on():
    """pydantic adds cold-start time the handler does not need (it validates by hand); the GC is
    paused only while the module initialises."""
    repo = Path(__file__).resolve().parents[2]
    script = (
        "import gc, sys, functions.recommend.app; "
        "assert 'pydantic' not in sys.modules, 'pydantic imported'; "
        "assert gc.isenabled(), 'GC left disabled'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "layers" / "core"), str(repo)])}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_real_model_is_loaded_once_at_import():
    assert recommend_app.recommender.scorer is not None, recommend_app.recommender.load_error
    assert recommend_app.recommender.model_version


@pytest.mark.parametrize(
    "fixture", ["http-get-recommendations.json", "http-post-rank.json", "http-get-interests.json"]
)
def test_the_sam_fixture_events_are_answered(fixture, user_state_table, monkeypatch):
    monkeypatch.setattr(
        recommend_app,
        "user_states",
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
    )
    response = recommend_app.lambda_handler(builders.fixture(fixture), FakeContext("RecommendFunction", 1024))
    assert response["statusCode"] == 200, response["body"]


def test_a_new_user_gets_popular_items_with_a_recommendation_id_and_model_version(api):
    answer = api("GET", "/v1/recommendations", query={"k": "10"})
    assert answer.status == 200, answer.body
    assert len(answer.body["items"]) == 10
    assert {item["reason"] for item in answer.body["items"]} == {"popular"}
    assert answer.body["source"] == "popular" and answer.body["degraded"] is False
    assert answer.body["model_version"] == recommend_app.recommender.model_version
    assert len(answer.body["recommendation_id"]) == 32
    assert answer.body["recommendation_id"] != api("GET", "/v1/recommendations").body["recommendation_id"]


def test_k_defaults_to_ten_and_accepts_the_bounds(api):
    assert len(api("GET", "/v1/recommendations").body["items"]) == 10
    assert len(api("GET", "/v1/recommendations", query={"k": "1"}).body["items"]) == 1
    assert len(api("GET", "/v1/recommendations", query={"k": "100"}).body["items"]) == 100


@pytest.mark.parametrize("k", ["0", "101", "-3", "ten", "1.5", ""])
def test_k_outside_1_to_100_is_a_clear_400(api, k):
    answer = api("GET", "/v1/recommendations", query={"k": k})
    assert answer.status == 400
    assert answer.body["message"] == "invalid request"
    assert any(error.startswith("query.k:") for error in answer.body["errors"]), answer.body


def test_genre_filter_accepts_known_genres_case_insensitively(api):
    answer = api("GET", "/v1/recommendations", query={"k": "20", "genre": "sci-fi,Western"})
    assert answer.status == 200, answer.body
    for item in answer.body["items"]:
        assert {"Sci-Fi", "Western"} & set(item["categories"]), item


def test_genre_is_an_alias_of_category_in_any_case_and_unknown_names_match_nothing(api):
    answer = api("GET", "/v1/recommendations", query={"genre": "action,Telenovela"})
    assert answer.status == 200 and answer.body["items"]
    assert all("Action" in item["categories"] for item in answer.body["items"])
    nothing = api("GET", "/v1/recommendations", query={"category": "Telenovela"})
    assert nothing.status == 200 and nothing.body["items"] == []


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/recommendations", {"k": "5", "user_id": "user-b"}),
        ("/v1/recommendations", {"limit": "5"}),
        ("/v1/interests", {"user_id": "user-b"}),
    ],
)
def test_unknown_query_parameters_are_refused(api, path, query):
    answer = api("GET", path, query=query)
    assert answer.status == 400
    assert "unknown parameter" in text(answer)


def test_excluded_items_are_left_out_and_overlong_values_refused(api):
    top = [i["item_id"] for i in api("GET", "/v1/recommendations", query={"k": "5"}).body["items"]]
    answer = api("GET", "/v1/recommendations", query={"k": "5", "exclude": ",".join(top[:3])})
    assert answer.status == 200
    assert not set(top[:3]) & {i["item_id"] for i in answer.body["items"]}
    too_long = api("GET", "/v1/recommendations", query={"exclude": "x" * 65})
    assert too_long.status == 400 and "at most 64" in text(too_long)
    oversized = api("GET", "/v1/recommendations", query={"exclude": "1," * 20_000})
    assert oversized.status == 400 and "characters" in text(oversized)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/v1/recommendations", {}),
        ("GET", "/v1/recommendations", {"query": {"k": "1000"}}),
        ("POST", "/v1/recommendations/rank", {"body": {"item_ids": ["1"]}}),
        ("POST", "/v1/recommendations/rank", {"body": {}}),
        ("GET", "/v1/interests", {}),
    ],
)
def test_no_subject_claim_is_a_401_even_for_invalid_requests(api, method, path, kwargs):
    answer = api(method, path, sub=None, **kwargs)
    assert answer.status == 401
    assert "token" in answer.body["message"]
    assert api(method, path, sub="", **kwargs).status == 401


def test_cors_headers_only_for_the_configured_origins(api):
    allowed = api("GET", "/v1/interests", origin=ALLOWED_ORIGIN)
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    other = api("GET", "/v1/interests", origin="https://evil.example.net")
    assert other.status == 200
    assert not any(h.lower().startswith("access-control") for h in other.headers)


def cors_for(origins: str):
    settings = RecommendSettings.from_env(
        {"USER_STATE_TABLE": "t", "MODEL_DIR": "m", "ALLOWED_ORIGINS": origins}
    )
    return recommend_app._cors(settings.allowed_origins)


def test_no_configured_origins_means_no_cors_at_all():
    assert cors_for("") is None
    config = cors_for("https://a.example, https://b.example")
    assert config.to_dict("https://b.example")["Access-Control-Allow-Origin"] == "https://b.example"
    assert config.to_dict("https://c.example") == {}
    assert cors_for("*") is None
    assert cors_for("*, https://a.example").to_dict("https://evil.example") == {}


def test_rank_orders_candidates_and_reports_unknown_ids(api):
    catalog = recommend_app.recommender.catalog
    candidates = catalog.item_ids[:20]
    answer = api("POST", "/v1/recommendations/rank", body={"item_ids": [*candidates, "no-such-item"]})
    assert answer.status == 200, answer.body
    assert sorted(i["item_id"] for i in answer.body["items"]) == sorted(candidates)
    assert answer.body["unknown_item_ids"] == ["no-such-item"]
    scores = [i["score"] for i in answer.body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert answer.body["model_version"] and answer.body["recommendation_id"]


def test_rank_accepts_500_candidates(api):
    ids = recommend_app.recommender.catalog.item_ids[:500]
    answer = api("POST", "/v1/recommendations/rank", body={"item_ids": ids})
    assert answer.status == 200 and len(answer.body["items"]) == 500


@pytest.mark.parametrize(
    ("body", "raw", "expected"),
    [
        (None, "", "body"),
        (None, "{not json", "json"),
        ([1, 2], None, "body"),
        ({}, None, "item_ids"),
        ({"item_ids": []}, None, "item_ids"),
        ({"item_ids": [str(i) for i in range(501)]}, None, "item_ids"),
        ({"item_ids": [1, 2]}, None, "item_ids"),
        ({"item_ids": [""]}, None, "item_ids"),
        ({"item_ids": ["x" * 65]}, None, "item_ids"),
        ({"item_ids": ["1"], "user_id": "user-b"}, None, "user_id"),
    ],
)
def test_bad_rank_bodies_are_clear_400s(api, body, raw, expected):
    answer = api("POST", "/v1/recommendations/rank", body=body, raw_body=raw)
    assert answer.status == 400, answer.body
    assert expected in json.dumps(answer.body).lower()


def test_a_non_json_content_type_is_a_clear_415(api):
    event = http_event("POST", "/v1/recommendations/rank", body={"item_ids": ["1"]})
    event["headers"]["content-type"] = "text/plain"
    response = recommend_app.lambda_handler(event, FakeContext("RecommendFunction", 1024))
    assert response["statusCode"] == 415
    assert "application/json" in json.loads(response["body"])["message"]


def test_rank_refuses_query_parameters(api):
    answer = api("POST", "/v1/recommendations/rank", query={"user_id": "b"}, body={"item_ids": ["1"]})
    assert answer.status == 400 and "unknown parameter" in text(answer)


def test_interests_of_a_new_user_are_a_distribution_over_all_genres(api):
    answer = api("GET", "/v1/interests")
    assert answer.status == 200
    assert list(answer.body["interests"]) == list(GENRES)
    assert sum(answer.body["interests"].values()) == pytest.approx(1.0, abs=1e-4)
    assert answer.body["source"] == "popular" and answer.body["degraded"] is False


def test_the_state_is_read_strongly_consistently_for_the_token_subject(api, monkeypatch):
    calls = []
    real_get = recommend_app.user_states.get

    def spy(user_id, consistent=True):
        calls.append((user_id, consistent))
        return real_get(user_id, consistent=consistent)

    monkeypatch.setattr(recommend_app.user_states, "get", spy)
    api("GET", "/v1/recommendations", sub="user-z")
    api("POST", "/v1/recommendations/rank", sub="user-z", body={"item_ids": ["1"]})
    api("GET", "/v1/interests", sub="user-z")
    assert calls == [("user-z", True)] * 3


class BrokenScorer:
    """A scorer whose every call fails, as a corrupt interpreter would."""

    def __init__(self, real):
        self.version = real.version
        self.catalog = real.catalog

    def _fail(self, *args, **kwargs):
        raise RuntimeError("TFLite invoke failed")

    interests = score = retrieve = _fail


@pytest.fixture
def broken_model(monkeypatch):
    real = recommend_app.recommender
    broken = Recommender(real.catalog, BrokenScorer(real.scorer), real.config)
    monkeypatch.setattr(recommend_app, "recommender", broken)


def metric_names(output: str) -> set[str]:
    names: set[str] = set()
    for line in output.splitlines():
        if line.startswith("{") and "_aws" in line:
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                names |= {m["Name"] for m in directive["Metrics"]}
    return names


def test_a_failing_model_answers_popular_items_degraded_with_a_metric(
    api, broken_model, user_state_table, capsys
):
    seen = recommend_app.recommender.catalog.item_ids[:3]
    seed_state(user_state_table, "user-a", seen)
    capsys.readouterr()
    for method, path, kwargs in [
        ("GET", "/v1/recommendations", {}),
        ("POST", "/v1/recommendations/rank", {"body": {"item_ids": ["1", "2"]}}),
        ("GET", "/v1/interests", {}),
    ]:
        answer = api(method, path, sub="user-a", **kwargs)
        assert answer.status == 200, answer.body
        assert answer.body["degraded"] is True
        assert {item["reason"] for item in answer.body.get("items", [])} <= {"popular"}
        returned = {item["item_id"] for item in answer.body.get("items", [])}
        assert path.endswith("rank") or not set(seen) & returned
    assert "DegradedResponses" in metric_names(capsys.readouterr().out)


def test_a_model_that_never_loaded_still_answers(api, monkeypatch, tmp_path):
    monkeypatch.setattr(recommend_app, "recommender", Recommender.from_model_dir(tmp_path / "missing"))
    answer = api("GET", "/v1/recommendations")
    assert answer.status == 200
    assert answer.body == {**answer.body, "degraded": True, "items": [], "model_version": None}
    assert api("POST", "/v1/recommendations/rank", body={"item_ids": ["1"]}).body["unknown_item_ids"] == ["1"]
    assert api("GET", "/v1/interests").status == 200


def test_a_failed_state_read_degrades_instead_of_failing(aws, monkeypatch, capsys):
    missing_table = UserStateStore.from_client(boto3.client("dynamodb"), "no-such-table")
    monkeypatch.setattr(recommend_app, "user_states", missing_table)
    response = recommend_app.lambda_handler(
        http_event("GET", "/v1/recommendations"), FakeContext("RecommendFunction", 1024)
    )
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["degraded"] is True
    assert "StateReadFailures" in metric_names(capsys.readouterr().out)


@pytest.fixture
def log_output():
    """What the Powertools logger writes (its handler holds the stdout of import time)."""
    stream = io.StringIO()
    previous = recommend_app.logger.registered_handler.setStream(stream)
    yield stream
    recommend_app.logger.registered_handler.setStream(previous)


def test_logs_carry_the_recommendation_id_and_never_the_token(api, log_output):
    answer = api("GET", "/v1/recommendations")
    output = log_output.getvalue()
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"level"' in line]
    answered = [entry for entry in logs if entry.get("message") == "answered"]
    assert answered and answered[0]["recommendation_id"] == answer.body["recommendation_id"]
    assert "Bearer" not in output and "fixture.signature" not in output


def test_metrics_report_latency_and_candidates_scored(api, capsys):
    capsys.readouterr()
    api("GET", "/v1/recommendations")
    assert {"Latency", "CandidatesScored"} <= metric_names(capsys.readouterr().out)


def translated_template() -> dict:
    """template.yaml as CloudFormation receives it (samtranslator, offline)."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    template = yaml_parse((EVENTS_DIR.parent / "template.yaml").read_text())
    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/artifact.zip"
    return transform(template, {}, NoManagedPolicies())


def test_template_routes_every_recommend_path_through_the_jwt_authorizer_with_a_get_item_only_role():
    resources = translated_template()["Resources"]
    api = next(r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    paths = api["Properties"]["Body"]["paths"]
    for path, method in [
        ("/v1/recommendations", "get"),
        ("/v1/recommendations/rank", "post"),
        ("/v1/interests", "get"),
        ("/v1/me", "delete"),
    ]:
        operation = paths[path][method]
        assert list(operation["security"][0]) == ["CognitoAuthorizer"]
        assert "RecommendFunctionAliaslive" in operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    statements = [
        statement
        for policy in resources["RecommendFunctionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    table_arn = {"Fn::GetAtt": ["UserStateTable", "Arn"]}
    assert statements == [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": table_arn},
        {"Effect": "Allow", "Action": ["dynamodb:DeleteItem"], "Resource": table_arn},
        {
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": {"Fn::Sub": "${CatalogTable.Arn}/index/ByUpdate"},
        },
        {
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": {"Fn::GetAtt": ["TrendingTable", "Arn"]},
        },
    ]
    function = resources["RecommendFunction"]["Properties"]
    assert function["Handler"] == "app.lambda_handler" and function["Runtime"] == "python3.12"
    assert {"Ref": next(k for k in resources if k.startswith("ModelLayer"))} in function["Layers"]
    variables = function["Environment"]["Variables"]
    assert variables["MODEL_DIR"] == "/opt/model"
    assert {"USER_STATE_TABLE", "ALLOWED_ORIGINS", "RETRIEVAL_SIZE", "EXPLORATION_SHARE"} <= set(variables)


def test_a_snapstart_restore_gives_the_copy_its_own_store_connections():
    before = recommend_app.user_states
    recommend_app.renew_after_restore()
    after = recommend_app.user_states
    assert after is not before and after._client is not before._client


def test_every_ranked_answer_logs_its_impression(api, monkeypatch):
    logged: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        recommend_app.logger,
        "info",
        lambda message, *args, **kwargs: logged.append((message, kwargs.get("extra"))),
    )
    answer = api("GET", "/v1/recommendations", query={"k": "5"})
    (impression,) = [extra for message, extra in logged if message == "impression"]
    assert impression["kind"] == "impression" and impression["user_id"] == "user-a"
    assert impression["recommendation_id"] == answer.body["recommendation_id"]
    assert impression["items"] == [[i["item_id"], i["reason"]] for i in answer.body["items"]]
    assert impression["model_version"] == answer.body["model_version"]
    assert impression["route"] == "GET /v1/recommendations"
