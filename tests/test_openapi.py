"""The OpenAPI document: generated from the routes, valid, and a property-based run over it finds no 5xx."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from functions.recommend import app as recommend_app
from functions.recommend.openapi import DOCUMENT_PATH, document
from rtrec.features import GENRES
from rtrec.state import Interaction, UserState
from rtrec.stores.user_state import UserStateStore
from tests.functions.test_recommend import FakeContext, http_event

SPEC = json.loads(DOCUMENT_PATH.read_text())
USER_WITH_HISTORY = "user-with-history"


def test_the_committed_document_matches_the_routes():
    assert DOCUMENT_PATH.read_text() == document(), "regenerate: make openapi"


def test_the_document_is_valid_openapi_and_covers_every_route():
    validate(SPEC)
    assert set(SPEC["paths"]) == {"/v1/recommendations", "/v1/recommendations/rank", "/v1/interests"}
    assert SPEC["security"] == [{"jwt": []}]
    for path in SPEC["paths"].values():
        for operation in path.values():
            assert {"200", "400", "401"} <= set(operation["responses"])
    parameters = SPEC["paths"]["/v1/recommendations"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == {"k", "genre", "exclude"}
    assert not any(p["name"] in {"user", "user_id", "sub"} for p in parameters)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under the (small) JSON Schema subset this document uses."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(int(schema.get("minimum", -(2**31))), int(schema.get("maximum", 2**31)))
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 80), 80))
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(
            from_schema(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 20), 20),
        )
    if kind == "object":
        properties = {name: from_schema(s) for name, s in schema.get("properties", {}).items()}
        return st.fixed_dictionaries(properties)
    raise AssertionError(f"schema type not covered by this test: {schema}")


def query_strategy(parameters: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, str]]:
    """Documented parameters with valid or arbitrary string values, sometimes an undocumented one."""
    values = {}
    for parameter in parameters:
        valid = from_schema(parameter["schema"]).filter(lambda v: v is not None).map(str)
        if parameter["name"] == "genre":
            valid = st.lists(st.sampled_from(GENRES), min_size=1, max_size=4).map(",".join)
        values[parameter["name"]] = st.one_of(valid, st.text(max_size=30))
    documented = st.fixed_dictionaries({}, optional=values)
    extra = st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=1)
    return st.tuples(documented, extra).map(lambda pair: {**pair[1], **pair[0]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def operations() -> st.SearchStrategy[tuple[str, str, dict, Any]]:
    choices = []
    for path, methods in SPEC["paths"].items():
        for method, operation in methods.items():
            query = query_strategy(operation.get("parameters", []))
            body: st.SearchStrategy[Any] = st.none()
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                body = st.one_of(from_schema(schema), json_values)
            choices.append(st.tuples(st.just(method.upper()), st.just(path), query, body))
    return st.one_of(choices)


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    content = SPEC["paths"][path][method.lower()]["responses"][str(status)]["content"]
    return {**content["application/json"]["schema"], "components": SPEC["components"]}


@pytest.fixture
def store(user_state_table, monkeypatch):
    catalog = recommend_app.recommender.catalog
    items = catalog.item_ids[:5] if catalog is not None else ["1"]
    recent = [Interaction(i, "rating", 1_795_800_000_000 + n, f"e{n}", 5.0) for n, i in enumerate(items)]
    user_state_table.put_item(
        Item=UserState(USER_WITH_HISTORY, version=1, recent=recent, seen_items=items).to_item()
    )
    monkeypatch.setattr(recommend_app, "user_states", UserStateStore.from_env())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=operations(), sub=st.sampled_from([USER_WITH_HISTORY, "new-user", None]))
def test_no_generated_request_gets_a_5xx_and_every_200_matches_its_schema(store, request, sub):
    method, path, query, body = request
    event = http_event(method, path, sub=sub, query=query or None, body=body)
    response = recommend_app.lambda_handler(event, FakeContext())
    status = response["statusCode"]
    assert status < 500, response
    answer = json.loads(response["body"])
    if sub is None:
        assert status == 401
        return
    assert status in (200, 400), response
    jsonschema.validate(answer, response_schema(path, method, status))
