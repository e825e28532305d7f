"""Event schema: what a client may send and what the stream carries."""

from __future__ import annotations

import json

import pytest

from rtrec.events import (
    MAX_CLOCK_SKEW_MS,
    Event,
    InvalidEvent,
    parse_stream_record,
    parse_timestamp,
    validate_client_event,
)

NOW = 1_795_809_600_000  # 2026-11-27T20:00:00Z


def client_event(**overrides) -> dict:
    raw = {"event_id": "e1", "item_id": "50", "type": "view", "timestamp": NOW}
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def test_valid_event_takes_the_user_from_the_caller():
    event = validate_client_event(
        client_event(type="rating", value=4, session_id="s1", context={"screen": "home"}), "u1", NOW
    )
    assert event == Event("u1", "e1", "50", "rating", NOW, 4.0, "s1", None, {"screen": "home"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-27T20:00:00Z", NOW),
        ("2026-11-27T21:00:00.250+01:00", NOW + 250),
        (NOW, NOW),
        (str(NOW), NOW),
    ],
)
def test_timestamps_iso_or_epoch_milliseconds(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (1_795_809_600, "epoch seconds"),
        ("2026-11-27T20:00:00", "time zone"),
        ("yesterday", "ISO-8601"),
        (True, "ISO-8601"),
        (float("nan"), "non-negative"),
    ],
)
def test_bad_timestamps_are_explained(raw, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_timestamp(raw)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_id": None}, "event_id is required"),
        ({"event_id": ""}, "event_id must be a non-empty string"),
        ({"event_id": "x" * 65}, "at most 64"),
        ({"item_id": 50}, "item_id must be a non-empty string"),
        ({"type": "teleport"}, "type must be one of"),
        ({"type": None}, "type is required"),
        ({"timestamp": None}, "timestamp is required"),
        ({"timestamp": NOW + MAX_CLOCK_SKEW_MS + 1}, "future"),
        ({"timestamp": "1999-12-31T23:59:59Z"}, "before 2000"),
        ({"type": "rating", "value": 6}, "between 0 and 5"),
        ({"value": "5"}, "value must be a number"),
        ({"context": {"a": 1}}, "flat map"),
        ({"context": ["a"]}, "object of strings"),
        ({"context": {str(i): "v" for i in range(11)}}, "at most 10"),
        ({"user_id": "someone-else"}, "taken from the token"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_invalid_client_events_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(InvalidEvent, match=message):
        validate_client_event(client_event(**overrides), "u1", NOW)


def test_an_event_must_be_an_object():
    with pytest.raises(InvalidEvent, match="JSON object"):
        validate_client_event(["e1"], "u1", NOW)


def test_stream_record_round_trip():
    event = validate_client_event(
        client_event(type="rating", value=3.5, recommendation_id="r1", context={"k": "v"}), "u1", NOW
    )
    assert parse_stream_record(event.to_bytes(), NOW) == event
    assert json.loads(event.to_bytes())["user_id"] == "u1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"event_id": "e", "item_id": "i", "type": "view", "ts": 1}', "user_id is required"),
        (b'{"user_id": "u", "event_id": "e", "item_id": "i", "type": "view", "ts": "soon"}', "ts must be"),
        (b'{"user_id": "u", "event_id": "e", "item_id": "i", "type": "fly", "ts": 1}', "type must be"),
    ],
)
def test_poison_stream_records_are_recognised(data, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_stream_record(data, NOW)
