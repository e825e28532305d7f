"""Per-user state and the fold that applies events to it.

The fold is designed so that the result does not depend on the order in which
a user's events arrive, nor on how often each arrives (within the
de-duplication window):

- ``recent`` keeps the newest ``RECENT_LIMIT`` interactions ordered by (ts, event_id);
- ``seen_items`` keeps each item's newest interaction time and the newest ``SEEN_LIMIT`` items;
- ``interests`` are exponentially decayed sums, which are order independent
  (a late event is added already decayed to ``interests_at``);
- ``last_event_*`` is a max over (ts, event_id), so a late event never moves it back;
- ``counts`` count distinct event ids.

The module is pure: no boto3, no clock (callers pass ``now_ms``).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rtrec.events import Event
from rtrec.features import GENRES, SEQUENCE_LENGTH, Catalog, HistoryStep

RECENT_LIMIT = SEQUENCE_LENGTH
SEEN_LIMIT = 500
EVENT_ID_WINDOW = 200
INTEREST_HALF_LIFE_MS = 7 * 24 * 3600 * 1000
DEFAULT_TTL_SECONDS = 180 * 24 * 3600

# How much one event says about the user's taste. A skip counts but adds no
# interest: negative scores would make the decayed sums hard to read as a profile.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "skip": 0.0,
}
_DEFAULT_RATING_WEIGHT = 2.0


def event_weight(event_type: str, value: float | None = None) -> float:
    """Interest weight of one event; a rating of 1–2 stars adds nothing, 5 stars adds 3."""
    if event_type == "rating":
        return _DEFAULT_RATING_WEIGHT if value is None else max(0.0, float(value) - 2.0)
    return EVENT_WEIGHTS.get(event_type, 1.0)


def decay_factor(elapsed_ms: float) -> float:
    """Multiplier for a score that aged ``elapsed_ms`` (half-life INTEREST_HALF_LIFE_MS)."""
    return math.pow(2.0, -elapsed_ms / INTEREST_HALF_LIFE_MS)


@dataclass(frozen=True)
class Interaction:
    """One entry of ``UserState.recent``."""

    item_id: str
    type: str
    ts: int
    event_id: str
    value: float | None = None

    @property
    def key(self) -> tuple[int, str]:
        return (self.ts, self.event_id)


@dataclass
class UserState:
    """The DynamoDB ``UserState`` item as Python (see docs/ARCHITECTURE.md for the contract)."""

    user_id: str
    version: int = 0  # 0 = not stored yet
    recent: list[Interaction] = field(default_factory=list)
    seen_items: list[str] = field(default_factory=list)
    seen_at: list[int] = field(default_factory=list)  # parallel to seen_items: newest ts per item
    interests: dict[str, float] = field(default_factory=dict)
    interests_at: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    last_event_at: int = 0
    last_event_id: str = ""
    event_ids: list[str] = field(default_factory=list)
    updated_at: int = 0
    expires_at: int = 0

    def history(self) -> list[HistoryStep]:
        """The recent interactions as feature-encoder steps, oldest first."""
        return [HistoryStep(i.item_id, i.type, i.value) for i in self.recent]

    def interests_as_of(self, now_ms: int) -> dict[str, float]:
        """Interest scores decayed to ``now_ms`` (never grown when now is before interests_at)."""
        factor = decay_factor(max(0, now_ms - self.interests_at))
        return {genre: score * factor for genre, score in self.interests.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UserState:
        """Build from a boto3 resource item (numbers arrive as Decimal)."""
        recent = [
            Interaction(
                item_id=str(entry["item_id"]),
                type=str(entry["type"]),
                ts=int(entry["ts"]),
                event_id=str(entry["event_id"]),
                value=None if entry.get("value") is None else float(entry["value"]),
            )
            for entry in item.get("recent", [])
        ]
        return cls(
            user_id=str(item["user_id"]),
            version=int(item.get("version", 0)),
            recent=recent,
            seen_items=[str(i) for i in item.get("seen_items", [])],
            seen_at=[int(t) for t in item.get("seen_at", [])],
            interests={str(k): float(v) for k, v in item.get("interests", {}).items()},
            interests_at=int(item.get("interests_at", 0)),
            counts={str(k): int(v) for k, v in item.get("counts", {}).items()},
            last_event_at=int(item.get("last_event_at", 0)),
            last_event_id=str(item.get("last_event_id", "")),
            event_ids=[str(e) for e in item.get("event_ids", [])],
            updated_at=int(item.get("updated_at", 0)),
            expires_at=int(item.get("expires_at", 0)),
        )

    def to_item(self) -> dict[str, Any]:
        """The boto3 resource item (floats as Decimal; DynamoDB rejects Python floats)."""
        recent = []
        for i in self.recent:
            entry: dict[str, Any] = {"item_id": i.item_id, "type": i.type, "ts": i.ts, "event_id": i.event_id}
            if i.value is not None:
                entry["value"] = _decimal(i.value)
            recent.append(entry)
        item: dict[str, Any] = {
            "user_id": self.user_id,
            "version": self.version,
            "recent": recent,
            "seen_items": list(self.seen_items),
            "seen_at": list(self.seen_at),
            "interests": {genre: _decimal(score) for genre, score in self.interests.items()},
            "interests_at": self.interests_at,
            "counts": dict(self.counts),
            "last_event_at": self.last_event_at,
            "last_event_id": self.last_event_id,
            "event_ids": list(self.event_ids),
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
        }
        if not self.last_event_id:
            # DynamoDB accepts empty strings, but an absent attribute says "no event" more plainly.
            del item["last_event_id"]
        return item


def _decimal(value: float) -> Decimal:
    # Ten significant digits keep the item small and round-trip stable.
    return Decimal(format(value, ".10g"))


@dataclass
class FoldResult:
    """What one fold did: the new state plus the events it applied or skipped as duplicates."""

    state: UserState
    applied: list[Event]
    duplicates: list[Event]

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def fold(
    state: UserState | None,
    user_id: str,
    events: Iterable[Event],
    catalog: Catalog | None,
    now_ms: int,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> FoldResult:
    """Apply a user's events (stream order) to their state; the input state is not modified.

    An event whose id is in the de-duplication window (or repeats within
    ``events``) changes nothing. ``version`` is incremented by one when at least
    one event is applied; the caller writes conditionally on the old version.
    """
    if state is not None and state.user_id != user_id:
        raise ValueError("state belongs to another user")
    known_ids = set(state.event_ids) if state is not None else set()
    applied: list[Event] = []
    duplicates: list[Event] = []
    for event in events:
        if event.user_id != user_id:
            raise ValueError("event belongs to another user")
        if event.event_id in known_ids:
            duplicates.append(event)
        else:
            known_ids.add(event.event_id)
            applied.append(event)
    if not applied:
        return FoldResult(state if state is not None else UserState(user_id=user_id), applied, duplicates)

    new = _copy(state) if state is not None else UserState(user_id=user_id)
    new.event_ids.extend(e.event_id for e in applied)
    new.event_ids = new.event_ids[-EVENT_ID_WINDOW:]

    for event in applied:
        new.counts[event.type] = new.counts.get(event.type, 0) + 1
        bisect.insort(
            new.recent,
            Interaction(event.item_id, event.type, event.ts, event.event_id, event.value),
            key=_interaction_key,
        )
        if (event.ts, event.event_id) > (new.last_event_at, new.last_event_id):
            new.last_event_at, new.last_event_id = event.ts, event.event_id
    new.recent = new.recent[-RECENT_LIMIT:]

    seen = dict(zip(new.seen_items, new.seen_at, strict=True))
    for event in applied:
        if event.ts > seen.get(event.item_id, -1):
            seen[event.item_id] = event.ts
    newest_seen = sorted(seen.items(), key=_by_time_then_item)[-SEEN_LIMIT:]
    new.seen_items = [item for item, _ in newest_seen]
    new.seen_at = [ts for _, ts in newest_seen]

    _add_interests(new, applied, catalog)
    new.version += 1
    new.updated_at = now_ms
    new.expires_at = now_ms // 1000 + ttl_seconds
    return FoldResult(new, applied, duplicates)


_interaction_key = operator.attrgetter("ts", "event_id")
_by_time_then_item = operator.itemgetter(1, 0)


def _copy(state: UserState) -> UserState:
    # Interactions are frozen, so copying the containers is enough (and far cheaper than deepcopy).
    return dataclasses.replace(
        state,
        recent=list(state.recent),
        seen_items=list(state.seen_items),
        seen_at=list(state.seen_at),
        interests=dict(state.interests),
        counts=dict(state.counts),
        event_ids=list(state.event_ids),
    )


def _add_interests(state: UserState, events: list[Event], catalog: Catalog | None) -> None:
    """Decay the scores once to the newest time, then add each event already decayed to it.

    The result is a sum of weight x 2^(-age / half-life) terms, so it does not depend on the order of events.
    interests_at follows the newest event of any kind, so it equals last_event_at.
    """
    newest = max(state.interests_at, max(e.ts for e in events))
    if newest > state.interests_at:
        factor = decay_factor(newest - state.interests_at)
        state.interests = {genre: score * factor for genre, score in state.interests.items()}
        state.interests_at = newest
    if catalog is None:
        return
    for event in events:
        weight = event_weight(event.type, event.value)
        genres = catalog.genres_of(event.item_id) if weight else []
        if not genres:
            continue
        share = weight / len(genres) * decay_factor(newest - event.ts)
        for genre in genres:
            state.interests[genre] = state.interests.get(genre, 0.0) + share


def interest_vector(state: UserState, now_ms: int) -> list[float]:
    """Decayed interests in GENRES order (0 for genres never seen)."""
    scores = state.interests_as_of(now_ms)
    return [scores.get(genre, 0.0) for genre in GENRES]
