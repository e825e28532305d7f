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
import hashlib
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.events import Event
from rtrec.features import SEQUENCE_LENGTH, Catalog, HistoryStep
from rtrec.rotation import SHOWN_CAPACITY, SHOWN_DTYPE, SHOWN_HORIZON_S, ShownList, chain_key, empty_shown

if TYPE_CHECKING:
    from numpy.typing import NDArray

# The model reads the newest SEQUENCE_LENGTH steps; a few more are kept so that a paged list can
# rebuild the history its first page read after new events pushed the oldest out (rtrec.paging).
RECENT_MARGIN = 14
RECENT_LIMIT = SEQUENCE_LENGTH + RECENT_MARGIN
INTEREST_HALF_LIFE_MS = 7 * 24 * 3600 * 1000
DEFAULT_TTL_SECONDS = 180 * 24 * 3600
# Client re-sends (a lost 202, an SDK retry of PutRecords) carry the same event id under a new
# sequence number; ids applied within this horizon are remembered, as 8-byte hashes.
DEFAULT_DEDUPE_HORIZON_MS = 24 * 3600 * 1000
# Bounds that keep the item far below DynamoDB's 400 KB: a user past them loses the oldest entries
# (the horizon shrinks for that user, or the oldest seen items may come back).
EVENT_LOG_CAPACITY = 8_000  # 12 bytes each
SEEN_CAPACITY = 40_000  # 4 bytes each
# Kinesis sequence numbers survive redelivery; one high-water mark per shard the user's key lived on.
# Resharding adds shards, so only the most recently used marks are kept.
SHARD_MARK_CAPACITY = 16
# Scores smaller than this are stored as zero (dropped): decay over years would otherwise produce
# magnitudes DynamoDB refuses (below 1e-130), and such a share says nothing next to a fresh event.
SCORE_FLOOR = 1e-12

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
    """Multiplier for a score that aged ``elapsed_ms`` (half-life INTEREST_HALF_LIFE_MS); 0 on underflow."""
    factor = math.pow(2.0, -max(0.0, elapsed_ms) / INTEREST_HALF_LIFE_MS)
    return factor if factor >= SCORE_FLOOR else 0.0


def item_key(item_id: str) -> int:
    """The 32-bit key of an item in the seen set: small, stable across model versions."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "little")


def event_key(event_id: str) -> int:
    """The 64-bit key of an event id in the de-duplication log."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class StreamPosition:
    """Where a record sits in the stream: its shard and sequence number (kept across redeliveries)."""

    shard_id: str
    sequence_number: int


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
    # Keys (item_key) of every item the user interacted with, oldest first, at most SEEN_CAPACITY.
    seen: NDArray[np.uint32] = field(default_factory=lambda: np.zeros(0, dtype="<u4"))
    interests: dict[str, float] = field(default_factory=dict)
    interests_at: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    last_event_at: int = 0
    last_event_id: str = ""
    # De-duplication log: event_key of each applied event and when it was applied (epoch seconds).
    event_keys: NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype="<u8"))
    event_applied_at: NDArray[np.uint32] = field(default_factory=lambda: np.zeros(0, dtype="<u4"))
    # Per-shard high-water marks: shard id -> (highest sequence number consumed, when, epoch seconds).
    shard_marks: dict[str, tuple[int, int]] = field(default_factory=dict)
    updated_at: int = 0
    expires_at: int = 0
    # Items shown in recent answers and not interacted with since (rtrec.rotation.SHOWN_DTYPE entries,
    # oldest first, at most SHOWN_CAPACITY, none older than SHOWN_HORIZON_S): what rotation pushes down.
    shown: NDArray[Any] = field(default_factory=empty_shown)

    def history(self) -> list[HistoryStep]:
        """The recent interactions as feature-encoder steps, oldest first."""
        return [HistoryStep(i.item_id, i.type, i.value) for i in self.recent]

    def interests_as_of(self, now_ms: int) -> dict[str, float]:
        """Interest scores decayed to ``now_ms`` (never grown when now is before interests_at)."""
        factor = decay_factor(max(0, now_ms - self.interests_at))
        return {genre: score * factor for genre, score in self.interests.items()}

    def has_seen(self, item_ids: list[str]) -> NDArray[np.bool_]:
        """Boolean per item id: did the user interact with it (ever, within SEEN_CAPACITY items)."""
        keys = np.fromiter((item_key(i) for i in item_ids), dtype="<u4", count=len(item_ids))
        return np.isin(keys, self.seen)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UserState:
        """Build from a boto3 resource item (numbers arrive as Decimal, binaries as bytes or Binary)."""
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
        updated_at = int(item.get("updated_at", 0))
        seen = _array(item.get("seen"), "<u4")
        event_keys = _array(item.get("event_keys"), "<u8")
        applied_at = _array(item.get("event_applied_at"), "<u4")
        # Items written before the compact sets held lists of ids: read them into the new form.
        if "seen_items" in item and not seen.size:
            seen = np.fromiter((item_key(str(i)) for i in item["seen_items"]), dtype="<u4")
        if "event_ids" in item and not event_keys.size:
            event_keys = np.fromiter((event_key(str(e)) for e in item["event_ids"]), dtype="<u8")
            applied_at = np.full(event_keys.size, updated_at // 1000, dtype="<u4")
        return cls(
            user_id=str(item["user_id"]),
            version=int(item.get("version", 0)),
            recent=recent,
            seen=seen,
            interests={str(k): float(v) for k, v in item.get("interests", {}).items()},
            interests_at=int(item.get("interests_at", 0)),
            counts={str(k): int(v) for k, v in item.get("counts", {}).items()},
            last_event_at=int(item.get("last_event_at", 0)),
            last_event_id=str(item.get("last_event_id", "")),
            event_keys=event_keys,
            event_applied_at=applied_at,
            shard_marks={
                str(shard): (int(mark["seq"]), int(mark["at"]))
                for shard, mark in item.get("shard_marks", {}).items()
            },
            updated_at=updated_at,
            expires_at=int(item.get("expires_at", 0)),
            shown=_array(item.get("shown"), SHOWN_DTYPE),
        )

    def to_item(self) -> dict[str, Any]:
        """The boto3 resource item (floats as Decimal, sets as little-endian binaries).

        Every number is storable: finite, and tiny magnitudes are written as zero.
        """
        recent = []
        for i in self.recent:
            entry: dict[str, Any] = {"item_id": i.item_id, "type": i.type, "ts": i.ts, "event_id": i.event_id}
            if i.value is not None:
                entry["value"] = storable_decimal(i.value)
            recent.append(entry)
        item: dict[str, Any] = {
            "user_id": self.user_id,
            "version": self.version,
            "recent": recent,
            "seen": self.seen.astype("<u4").tobytes(),
            "interests": {genre: storable_decimal(score) for genre, score in self.interests.items()},
            "interests_at": self.interests_at,
            "counts": dict(self.counts),
            "last_event_at": self.last_event_at,
            "last_event_id": self.last_event_id,
            "event_keys": self.event_keys.astype("<u8").tobytes(),
            "event_applied_at": self.event_applied_at.astype("<u4").tobytes(),
            # Sequence numbers have up to 128 digits: strings, not DynamoDB numbers (38 digits).
            "shard_marks": {
                shard: {"seq": str(seq), "at": at} for shard, (seq, at) in self.shard_marks.items()
            },
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
        }
        if self.shown.size:
            item["shown"] = self.shown.astype(SHOWN_DTYPE).tobytes()
        if not self.last_event_id:
            # DynamoDB accepts empty strings, but an absent attribute says "no event" more plainly.
            del item["last_event_id"]
        return item


def _array(raw: Any, dtype: str | np.dtype[Any]) -> NDArray[Any]:
    if raw is None:
        return np.zeros(0, dtype=dtype)
    data = bytes(raw.value if hasattr(raw, "value") else raw)  # boto3's Binary wraps the bytes
    size = np.dtype(dtype).itemsize
    return np.frombuffer(data[: len(data) - len(data) % size], dtype=dtype).copy()


def storable_decimal(value: float) -> Decimal:
    """``value`` as a DynamoDB number: ten significant digits, |x| < SCORE_FLOOR as 0.

    Raises ValueError for NaN, infinities and magnitudes DynamoDB cannot hold: a state that
    produced one is a bug to be reported, never a write to retry.
    """
    if not math.isfinite(value) or abs(value) >= 1e125:
        raise ValueError(f"{value!r} is not a storable number")
    if abs(value) < SCORE_FLOOR:
        return Decimal(0)
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
        """Whether the state must be written (at least one event was applied)."""
        return bool(self.applied)


def fold(
    state: UserState | None,
    user_id: str,
    events: Iterable[Event],
    catalog: Catalog | None,
    now_ms: int,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    *,
    positions: Sequence[StreamPosition | None] | None = None,
    dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS,
) -> FoldResult:
    """Apply a user's events (stream order) to their state; the input state is not modified.

    An event is a duplicate, and changes nothing, when its stream position is at or below the
    shard's high-water mark (a Kinesis redelivery: sequence numbers survive it), or when its id was
    applied within ``dedupe_horizon_ms`` or earlier in ``events`` (a client re-send).
    ``positions`` is parallel to ``events`` (None for events that did not come from the stream).
    ``version`` is incremented by one when the state changes; the caller writes conditionally on
    the old version.
    """
    if state is not None and state.user_id != user_id:
        raise ValueError("state belongs to another user")
    events = list(events)
    if positions is None:
        positions = [None] * len(events)
    if len(positions) != len(events):
        raise ValueError("positions must be parallel to events")
    base = state if state is not None else UserState(user_id=user_id)
    now_s = now_ms // 1000
    horizon_s = now_s - dedupe_horizon_ms // 1000
    live = base.event_applied_at >= horizon_s
    known_keys = set(base.event_keys[live].tolist())
    marks = dict(base.shard_marks)

    applied: list[Event] = []
    duplicates: list[Event] = []
    for event, position in zip(events, positions, strict=True):
        if event.user_id != user_id:
            raise ValueError("event belongs to another user")
        if position is not None and position.sequence_number <= marks.get(position.shard_id, (-1, 0))[0]:
            duplicates.append(event)  # a redelivery: the record itself was consumed before
            continue
        key = event_key(event.event_id)
        if key in known_keys:
            duplicates.append(event)  # a re-send: the same event id under a new sequence number
            continue
        known_keys.add(key)
        applied.append(event)
        if position is not None:
            marks[position.shard_id] = (position.sequence_number, now_s)
    if not applied:
        return FoldResult(base, applied, duplicates)

    new = _copy(base)
    new.shard_marks = dict(sorted(marks.items(), key=lambda mark: mark[1][1])[-SHARD_MARK_CAPACITY:])
    _apply(new, applied, catalog, live, now_s)
    new.version += 1
    new.updated_at = now_ms
    new.expires_at = now_ms // 1000 + ttl_seconds
    return FoldResult(new, applied, duplicates)


def _apply(
    new: UserState, applied: list[Event], catalog: Catalog | None, live: NDArray[np.bool_], now_s: int
) -> None:
    keys = np.fromiter((event_key(e.event_id) for e in applied), dtype="<u8", count=len(applied))
    new.event_keys = np.concatenate([new.event_keys[live], keys])[-EVENT_LOG_CAPACITY:]
    new.event_applied_at = np.concatenate(
        [new.event_applied_at[live], np.full(len(applied), now_s, dtype="<u4")]
    )[-EVENT_LOG_CAPACITY:]

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

    items = np.fromiter(
        dict.fromkeys(item_key(e.item_id) for e in applied), dtype="<u4"
    )  # first occurrence order, duplicates dropped
    fresh = items[~np.isin(items, new.seen)]
    if fresh.size:
        new.seen = np.concatenate([new.seen, fresh])[-SEEN_CAPACITY:]
    # An item the user interacted with is in `seen` and never served again: its shown entries say
    # nothing more (and fold_shown never adds entries for seen items, so the order of the folds is moot).
    if new.shown.size:
        new.shown = new.shown[~np.isin(new.shown["item"], items)]
    _add_interests(new, applied, catalog)


# Time order, and arrival order for events that share a timestamp (insort puts a newcomer after its
# equals): training reads a history in file order, so serving must not re-sort ties by event id.
_interaction_key = operator.attrgetter("ts")


@dataclass
class ShownFoldResult:
    """What folding impressions did: the new state, and how many entries it added or already held."""

    state: UserState
    added: int
    duplicates: int

    @property
    def changed(self) -> bool:
        return bool(self.added)


def fold_shown(state: UserState | None, shown: Iterable[ShownList], now_ms: int) -> ShownFoldResult | None:
    """Add the items of a user's impressions to their shown list; the input state is not modified.

    None when there is no state: an impression never creates a user's item (a user who erased their
    data must stay erased, and an answer to a user without events has nothing to rotate against).
    Idempotent: an entry is (item, chain), so a redelivered impression adds nothing; items the user
    already interacted with (``seen``) are skipped. The list keeps the newest SHOWN_CAPACITY entries
    shown within SHOWN_HORIZON_S of ``now_ms``. The TTL is not refreshed (it follows the user's events).
    """
    if state is None:
        return None
    now_s = now_ms // 1000
    horizon_s = now_s - SHOWN_HORIZON_S
    current = state.shown[state.shown["at"] >= horizon_s] if state.shown.size else state.shown
    known = set(zip(current["item"].tolist(), current["chain"].tolist(), strict=True))
    added: list[tuple[int, int, int]] = []
    duplicates = 0
    for impression in shown:
        if impression.user_id != state.user_id:
            raise ValueError("impression belongs to another user")
        at = min(now_s, max(0, impression.ts_ms // 1000))
        if at < horizon_s:
            continue
        chain = chain_key(impression.recommendation_id)
        keys = np.array([item_key(i) for i in impression.item_ids], dtype="<u4")
        for key in keys[~np.isin(keys, state.seen)].tolist():
            if (key, chain) in known:
                duplicates += 1
                continue
            known.add((key, chain))
            added.append((key, at, chain))
    if not added:
        return ShownFoldResult(state, 0, duplicates)
    new = _copy(state)
    merged = np.concatenate([current, np.array(added, dtype=SHOWN_DTYPE)])
    merged = merged[np.argsort(merged["at"], kind="stable")]
    new.shown = merged[-SHOWN_CAPACITY:]
    new.version += 1
    new.updated_at = now_ms
    return ShownFoldResult(new, len(added), duplicates)


def _copy(state: UserState) -> UserState:
    # Interactions are frozen and arrays are replaced, never written in place: copying containers is enough.
    return dataclasses.replace(
        state,
        recent=list(state.recent),
        interests=dict(state.interests),
        counts=dict(state.counts),
        shard_marks=dict(state.shard_marks),
    )


def _add_interests(state: UserState, events: list[Event], catalog: Catalog | None) -> None:
    """Decay the scores once to the newest time, then add each event already decayed to it.

    The result is a sum of weight x 2^(-age / half-life) terms, so it does not depend on the order of events.
    interests_at follows the newest event of any kind, so it equals last_event_at. Shares that decay
    below SCORE_FLOOR (events years older than the newest, e.g. a backfilled history) count as zero.
    """
    newest = max(state.interests_at, max(e.ts for e in events))
    if newest > state.interests_at:
        factor = decay_factor(newest - state.interests_at)
        state.interests = {
            genre: score * factor for genre, score in state.interests.items() if score * factor >= SCORE_FLOOR
        }
        state.interests_at = newest
    if catalog is None:
        return
    for event in events:
        weight = event_weight(event.type, event.value)
        genres = catalog.categories_of(event.item_id) if weight else []
        share = weight / len(genres) * decay_factor(newest - event.ts) if genres else 0.0
        if share < SCORE_FLOOR:
            continue
        for genre in genres:
            state.interests[genre] = state.interests.get(genre, 0.0) + share
