"""Behaviour-event schema and validation.

Two shapes exist. A *client event* is what a client posts to ``POST /v1/events``
(no user: the user is always the token's ``sub``). A *stream record* is what the
collect function writes to Kinesis: the validated event, the user id and a
normalised epoch-millisecond timestamp. Both are validated here, so the
collect and ingest functions cannot disagree about what a valid event is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, overload

from rtrec.features import EVENT_TYPES

MAX_EVENTS_PER_REQUEST = 100
MAX_BODY_BYTES = 64 * 1024
MAX_ID_LENGTH = 64
# The user id is the token's subject and the stream's partition key. Kinesis takes partition keys of
# up to 256 characters; 128 leaves room for identity providers whose subjects are long (Auth0's
# "provider|id", Entra's 43-character pairwise ids) while keeping the state item's key small.
MAX_USER_ID_LENGTH = 128
MAX_CONTEXT_ENTRIES = 10
MAX_CONTEXT_KEY_LENGTH = 32
MAX_CONTEXT_VALUE_LENGTH = 128
# A client clock a little ahead is normal; far ahead would pin the user's
# "last event" fields to the future, so it is rejected.
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
# Offline clients upload late, so old events are accepted (they arrive already
# decayed); only timestamps before this are treated as a client bug.
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TIMESTAMP_TEXT = 64
MIN_RATING, MAX_RATING = 0.0, 5.0
# What `value` may be, per event type. Everything the API accepts must be storable by ingest, so the
# ranges sit well inside DynamoDB's number range (|x| < 1e126, 38 significant digits). Non-rating
# values are a quantity, a price or a dwell time: non-negative and bounded.
MAX_EVENT_VALUE = 1e9
VALUE_RANGES: dict[str, tuple[float, float]] = {
    event_type: ((MIN_RATING, MAX_RATING) if event_type == "rating" else (0.0, MAX_EVENT_VALUE))
    for event_type in EVENT_TYPES
}
# Values closer to zero than this are stored as zero: DynamoDB refuses magnitudes below 1e-130, and
# no quantity, price or rating is meaningful at this scale.
VALUE_RESOLUTION = 1e-9

_CLIENT_FIELDS = frozenset(
    {"event_id", "item_id", "type", "timestamp", "value", "session_id", "recommendation_id", "context"}
)
_RECORD_FIELDS = frozenset(
    {"user_id", "event_id", "item_id", "type", "ts", "value", "session_id", "recommendation_id", "context"}
)


class InvalidEvent(ValueError):
    """An event that breaks the schema; the message says why, for the caller."""


@dataclass(frozen=True)
class Event:
    """One validated behaviour event of one user."""

    user_id: str
    event_id: str
    item_id: str
    type: str
    ts: int  # epoch milliseconds
    value: float | None = None
    session_id: str | None = None
    recommendation_id: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready stream record (what the collect function writes to Kinesis)."""
        record: dict[str, Any] = {
            "user_id": self.user_id,
            "event_id": self.event_id,
            "item_id": self.item_id,
            "type": self.type,
            "ts": self.ts,
        }
        for name in ("value", "session_id", "recommendation_id"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        if self.context:
            record["context"] = dict(self.context)
        return record

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON of :meth:`to_record`."""
        return json.dumps(self.to_record(), separators=(",", ":"), ensure_ascii=False).encode()


def parse_timestamp(raw: Any) -> int:
    """ISO-8601 (with a zone) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(raw, bool):
        raise InvalidEvent("timestamp must be ISO-8601 or epoch milliseconds")
    if isinstance(raw, int | float):
        return _epoch_ms_from_number(raw)
    if isinstance(raw, str):
        return _epoch_ms_from_text(raw)
    raise InvalidEvent("timestamp must be ISO-8601 or epoch milliseconds")


def _epoch_ms_from_number(raw: float) -> int:
    """A JSON number (or a string of digits) read as epoch milliseconds."""
    if not math.isfinite(raw) or raw < 0:
        raise InvalidEvent("timestamp must be a non-negative epoch-milliseconds number")
    # Epoch seconds are a common client mistake; a value this small is 1973 in milliseconds.
    if raw < 100_000_000_000:
        raise InvalidEvent("timestamp looks like epoch seconds; send epoch milliseconds")
    return int(raw)


def _epoch_ms_from_text(raw: str) -> int:
    """A string: digits are epoch milliseconds, anything else must be ISO-8601 with a zone."""
    text = raw.strip()
    if len(text) > MAX_TIMESTAMP_TEXT:
        raise InvalidEvent("timestamp must be ISO-8601 or epoch milliseconds")
    if text.isascii() and text.isdigit():
        return _epoch_ms_from_number(int(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidEvent("timestamp must be ISO-8601 or epoch milliseconds") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("ISO-8601 timestamp needs a time zone (e.g. 'Z')")
    try:
        return round(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):  # a date at the edge of what datetime holds, after its offset
        raise InvalidEvent("timestamp is outside the accepted window") from None


def check_timestamp_window(ts: int, now_ms: int) -> int:
    """``ts`` when it lies in the accepted window: from MIN_TIMESTAMP_MS to now plus the clock skew.

    Collect checks it against its clock; ingest checks it again against its own, which is later, so
    every event collect accepted passes, and a record from another producer gets the same rule.
    """
    if ts > now_ms + MAX_CLOCK_SKEW_MS:
        raise InvalidEvent("timestamp is in the future")
    if ts < MIN_TIMESTAMP_MS:
        raise InvalidEvent("timestamp is before 2000-01-01")
    return ts


def check_text(value: Any, name: str, max_length: int) -> str:
    """A non-empty string of at most ``max_length`` characters, printable and encodable as UTF-8.

    Lone surrogates (valid in JSON's escapes, invalid in UTF-8) would fail later when the record is
    encoded for Kinesis or DynamoDB, so they are refused here, where the caller still gets a reason.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{name} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidEvent(f"{name} must be at most {max_length} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidEvent(f"{name} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(f"{name} must be valid Unicode (no lone surrogates)") from None
    return value


def validate_user_id(value: Any) -> str:
    """The user id (a token's ``sub``, a record's ``user_id``) under the rules both sides apply."""
    return check_text(value, "user_id", MAX_USER_ID_LENGTH)


@overload
def _identifier(raw: dict[str, Any], name: str, required: Literal[True] = ...) -> str: ...
@overload
def _identifier(raw: dict[str, Any], name: str, required: Literal[False]) -> str | None: ...
def _identifier(raw: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"{name} is required")
        return None
    return check_text(value, name, MAX_ID_LENGTH)


def _event_type(raw: dict[str, Any]) -> str:
    value = raw.get("type")
    if value is None:
        raise InvalidEvent("type is required")
    if value not in EVENT_TYPES:
        raise InvalidEvent(f"type must be one of {', '.join(EVENT_TYPES)}")
    return cast(str, value)  # one of EVENT_TYPES


def _value(raw: dict[str, Any], event_type: str) -> float | None:
    value = raw.get("value")
    return None if value is None else check_value(value, event_type)


def check_value(value: Any, event_type: str) -> float:
    """An event's ``value`` within its type's range, as ingest stores it (raises InvalidEvent otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("value must be a number")
    low, high = VALUE_RANGES[event_type]
    # Compared before any float conversion: an integer with hundreds of digits overflows a float.
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise InvalidEvent(f"a {event_type} value must be between {low:g} and {high:g}")
    return storable_value(float(value))


def storable_value(value: float) -> float:
    """``value`` as ingest stores it: ten significant digits, magnitudes below VALUE_RESOLUTION as 0."""
    if abs(value) < VALUE_RESOLUTION:
        return 0.0
    return float(format(value, ".10g"))


def _context(raw: dict[str, Any]) -> dict[str, str]:
    value = raw.get("context")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("context must be an object of strings")
    if len(value) > MAX_CONTEXT_ENTRIES:
        raise InvalidEvent(f"context holds at most {MAX_CONTEXT_ENTRIES} entries")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidEvent("context values must be strings (a flat map)")
        check_text(key, "a context key", MAX_CONTEXT_KEY_LENGTH)
        if len(item) > MAX_CONTEXT_VALUE_LENGTH:
            raise InvalidEvent(f"context values are at most {MAX_CONTEXT_VALUE_LENGTH} characters")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent("context values must be valid Unicode (no lone surrogates)") from None
    return dict(value)


def _reject_unknown(raw: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidEvent(f"unknown field(s): {', '.join(unknown)}")


def _with_optional_fields(
    raw: dict[str, Any], user_id: str, event_id: str, item_id: str, event_type: str, ts: int
) -> Event:
    """The event from its validated required fields plus the optional ones, validated here."""
    return Event(
        user_id=user_id,
        event_id=event_id,
        item_id=item_id,
        type=event_type,
        ts=ts,
        value=_value(raw, event_type),
        session_id=_identifier(raw, "session_id", required=False),
        recommendation_id=_identifier(raw, "recommendation_id", required=False),
        context=_context(raw),
    )


def validate_client_event(raw: Any, user_id: str, now_ms: int) -> Event:
    """Validate one event as posted by a client; the user comes from the token, never the body."""
    validate_user_id(user_id)
    if not isinstance(raw, dict):
        raise InvalidEvent("an event must be a JSON object")
    if "user_id" in raw:
        raise InvalidEvent("user_id is not accepted in the body; the user is taken from the token")
    _reject_unknown(raw, _CLIENT_FIELDS)
    event_id = _identifier(raw, "event_id")
    item_id = _identifier(raw, "item_id")
    event_type = _event_type(raw)
    if "timestamp" not in raw:
        raise InvalidEvent("timestamp is required")
    ts = check_timestamp_window(parse_timestamp(raw["timestamp"]), now_ms)
    return _with_optional_fields(raw, user_id, event_id, item_id, event_type, ts)


def loads_strict(data: bytes | str) -> Any:
    """JSON as the API and the stream accept it: UTF-8, no NaN or Infinity, bounded nesting and numbers.

    Every way a payload can fail to decode becomes one ``InvalidEvent`` with the reason, so callers
    never see a RecursionError (deep nesting) or a ValueError (an integer of thousands of digits).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidEvent("not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InvalidEvent(f"not valid JSON: {error.msg} at position {error.pos}") from None
    except RecursionError:
        raise InvalidEvent("not valid JSON: nested too deeply") from None
    except ValueError as error:  # int() refuses numbers of more than sys.get_int_max_str_digits() digits
        raise InvalidEvent(f"not valid JSON: {error}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_stream_record(data: bytes, now_ms: int) -> Event:
    """Decode and validate one Kinesis record payload, with every rule the collect function applies.

    Raises InvalidEvent for anything that is not a valid record (bad UTF-8, bad JSON, schema
    violation, a timestamp outside the window at ``now_ms``): such a record can never succeed on retry.
    """
    try:
        raw = loads_strict(data)
    except InvalidEvent as error:
        raise InvalidEvent(f"record is {error}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("record must be a JSON object")
    _reject_unknown(raw, _RECORD_FIELDS)
    if raw.get("user_id") is None:
        raise InvalidEvent("user_id is required")
    user_id = validate_user_id(raw["user_id"])
    event_id = _identifier(raw, "event_id")
    item_id = _identifier(raw, "item_id")
    event_type = _event_type(raw)
    ts = raw.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise InvalidEvent("ts must be epoch milliseconds (an integer)")
    check_timestamp_window(ts, now_ms)
    return _with_optional_fields(raw, user_id, event_id, item_id, event_type, ts)
