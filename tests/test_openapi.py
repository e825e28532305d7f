"""The OpenAPI document: generated from the routes, valid, one error shape (fuzzed in test_api_fuzz.py)."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from functions.recommend.openapi import DOCUMENT_PATH, document

SPEC = json.loads(DOCUMENT_PATH.read_text())
USER_WITH_HISTORY = "user-with-history"


def test_the_committed_document_matches_the_routes():
    assert DOCUMENT_PATH.read_text() == document(), "regenerate: make openapi"


def test_the_document_is_valid_openapi_and_covers_every_route():
    validate(SPEC)
    assert set(SPEC["paths"]) == {
        "/v1/events",
        "/v1/recommendations",
        "/v1/recommendations/rank",
        "/v1/interests",
        "/v1/items/{item_id}/similar",
        "/v1/me",
    }
    assert SPEC["security"] == [{"jwt": []}]
    for path in SPEC["paths"].values():
        for operation in path.values():
            assert {"400", "401", "403"} <= set(operation["responses"])
            errors = [r for status, r in operation["responses"].items() if status >= "400"]
            assert all(
                r["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse") for r in errors
            )
    parameters = SPEC["paths"]["/v1/recommendations"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == {"k", "genre", "category", "filter", "exclude", "after"}
    assert not any(p["name"] in {"user", "user_id", "sub"} for p in parameters)
