"""The catalog contract: item validation, filter parsing (bad filters too) and vectorised evaluation."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtrec.catalog import (
    CatalogColumns,
    CatalogItem,
    InvalidFilter,
    InvalidItem,
    ItemFilter,
    filter_pattern,
    parse_filter,
    validate_item,
    vocabulary_of,
)

NOW = 1_795_809_600_000


def item(item_id: str, categories=(), **attributes) -> CatalogItem:
    return CatalogItem(item_id, tuple(categories), attributes=attributes, created_at=NOW)


ITEMS = [
    item("a", ["shoes", "running"], brand="acme", price=49.0),
    item("b", ["shoes"], brand="globex", price=120.0),
    item("c", ["books"], language="en", price=12.5),
    CatalogItem("d", ("books",), attributes={"language": "fr"}, available=False, created_at=NOW),
]
COLUMNS = CatalogColumns(ITEMS, vocabulary_of(ITEMS))


def passing(expression: str = "", categories=()) -> list[str]:
    mask = COLUMNS.mask(ItemFilter(frozenset(categories), parse_filter(expression)))
    return [ITEMS[row - 1].item_id for row in mask.nonzero()[0]]


def test_an_item_from_any_vocabulary_round_trips():
    raw = {
        "item_id": "sku-1",
        "categories": ["Outdoor > Tents", "Sale"],
        "title": "Tent",
        "attributes": {"brand": "acme", "price": 199, "weight.kg": 2.5},
        "available": True,
        "created_at": "2026-11-27T20:00:00Z",
    }
    parsed = validate_item(raw, NOW)
    assert parsed.categories == ("Outdoor > Tents", "Sale")
    assert parsed.attributes == {"brand": "acme", "price": 199.0, "weight.kg": 2.5}
    assert validate_item(parsed.to_record(), NOW) == parsed
    assert validate_item({"item_id": "m", "genres": ["Drama"]}, NOW).categories == ("Drama",)  # the alias


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "JSON object"),
        ({"item_id": ""}, "non-empty"),
        ({"item_id": "x", "categories": "Drama"}, "list"),
        ({"item_id": "x", "attributes": {"nested": {"a": 1}}}, "flat"),
        ({"item_id": "x", "attributes": {"price": float("nan")}}, "finite"),
        ({"item_id": "x", "attributes": {"1bad": 1}}, "attribute name"),
        ({"item_id": "x", "available": "yes"}, "true or false"),
        ({"item_id": "x", "colour": "red"}, "unknown field"),
        ({"item_id": "x", "created_at": "soon"}, "created_at"),
    ],
)
def test_invalid_items_are_refused_with_a_reason(raw, message):
    with pytest.raises(InvalidItem, match=message):
        validate_item(raw, NOW)


def test_filters_combine_categories_and_predicates():
    assert passing() == ["a", "b", "c", "d"]
    assert passing(categories=["shoes"]) == ["a", "b"]
    assert passing("price<=50") == ["a", "c"]
    assert passing("brand=acme|globex;price>100") == ["b"]
    assert passing("brand!=acme") == ["b"]  # items without a brand never match
    assert passing("language=fr", categories=["books"]) == ["d"]
    assert passing(categories=["no-such-category"]) == []


@pytest.mark.parametrize(
    "expression", ["price<=", "price<=cheap", "<=5", "price~5", "brand=acme|", "a=1;" * 11, "x" * 1001]
)
def test_a_filter_that_cannot_be_parsed_is_refused(expression):
    with pytest.raises(InvalidFilter):
        parse_filter(expression)


def test_availability_is_its_own_column():
    assert COLUMNS.available.tolist() == [False, True, True, True, False]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    expression=st.from_regex(re.compile(filter_pattern()), fullmatch=True).filter(lambda e: len(e) <= 1000)
)
def test_every_expression_the_documented_pattern_allows_parses(expression):
    parse_filter(expression)
