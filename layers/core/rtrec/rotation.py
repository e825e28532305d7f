"""Rotation: items shown to a user recently, and not engaged with, are pushed down the next answers.

Impressions come back into the user's state as a bounded list of *shown* entries (``SHOWN_DTYPE``:
the item's key, when it was shown, and the key of the answer chain that showed it); the ingest
function folds them (``rtrec.state.fold_shown``) from the recommend function's impression log lines,
delivered by a CloudWatch Logs subscription. Serving turns the entries into a multiplier per item:

    multiplier(item) = Π over its showings less than T ago of (1 − rate × (1 − age / T))

with ``rate`` = ``ROTATION_RATE`` (0 = off, 1 = an item just shown is pushed to the end) and
``T`` = ``ROTATION_TIME_SECONDS``: each showing penalises the item by ``rate`` at once and the penalty
recovers linearly, vanishing after T (Recombee's rotationRate / rotationTime, default 0.1 / 7,200 s).
The model's ranking scores are logits, so the multiplier acts on them as ``+ log(multiplier)`` (a
multiplier on the item's softmax probability); popularity scores are multiplied directly.

Pure: no boto3, no clock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.events import MAX_ID_LENGTH, InvalidEvent, check_text, validate_user_id
from rtrec.impressions import KIND

if TYPE_CHECKING:
    from numpy.typing import NDArray

# One shown entry: item_key of the item, epoch seconds it was shown, chain_key of the answer's chain
# (every page of a paged list shares its first page's chain). 12 bytes.
SHOWN_DTYPE = np.dtype([("item", "<u4"), ("at", "<u4"), ("chain", "<u4")])
# Bounds of the list in the state item: the newest SHOWN_CAPACITY entries (12 KB, 100 answers of ten
# items), none older than SHOWN_HORIZON_S (the largest rotation time and paging window the settings allow).
SHOWN_CAPACITY = 1_000
SHOWN_HORIZON_S = 24 * 3600
# A multiplier never reaches 0: log(0) would make a score -inf, which the exploration draw cannot weigh.
MIN_MULTIPLIER = 1e-6
# Only the recommendations route feeds rotation: /rank orders the caller's own candidates, and the
# similar-items shelf is another context.
ROTATED_ROUTE = "GET /v1/recommendations"


def chain_key(recommendation_id: str) -> int:
    """The 32-bit key of an answer's chain: the first page's id (the part before the first '-')."""
    root = recommendation_id.split("-", 1)[0]
    return int.from_bytes(hashlib.blake2b(root.encode(), digest_size=4).digest(), "little")


def empty_shown() -> NDArray[Any]:
    return np.zeros(0, dtype=SHOWN_DTYPE)


@dataclass(frozen=True)
class RotationPolicy:
    """How strongly and for how long a shown item is pushed down (``rate`` 0 turns rotation off)."""

    rate: float = 0.1
    time_s: int = 7_200

    @property
    def enabled(self) -> bool:
        return self.rate > 0.0


@dataclass(frozen=True)
class Demotion:
    """Multipliers in (0, 1] for the items shown recently; items not listed keep 1."""

    keys: NDArray[np.uint32]  # sorted item keys
    factors: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.keys.size)

    def multipliers(self, item_keys: NDArray[np.uint32]) -> NDArray[np.float64]:
        """One multiplier per entry of ``item_keys`` (a catalog's item keys by index)."""
        out = np.ones(item_keys.shape[0], dtype=np.float64)
        if not self.keys.size:
            return out
        where = np.searchsorted(self.keys, item_keys)
        where[where >= self.keys.size] = 0
        hit = self.keys[where] == item_keys
        out[hit] = self.factors[where[hit]]
        return out


def demotion(
    shown: NDArray[Any],
    now_s: int,
    policy: RotationPolicy,
    *,
    skip_chain: int | None = None,
    shown_before_s: int | None = None,
) -> Demotion:
    """The multiplier of every item shown less than ``policy.time_s`` before ``now_s``.

    ``skip_chain`` leaves out one chain's entries (a paged list excludes its own items instead);
    ``shown_before_s`` keeps only entries shown before that time (rebuilding an earlier answer).
    """
    empty = Demotion(np.zeros(0, dtype="<u4"), np.zeros(0, dtype=np.float64))
    if not policy.enabled or not shown.size:
        return empty
    entries = shown
    if skip_chain is not None:
        entries = entries[entries["chain"] != skip_chain]
    if shown_before_s is not None:
        entries = entries[entries["at"] < shown_before_s]
    age = np.maximum(0, now_s - entries["at"].astype(np.int64))
    entries, age = entries[age < policy.time_s], age[age < policy.time_s]
    if not entries.size:
        return empty
    factor = np.maximum(MIN_MULTIPLIER, 1.0 - policy.rate * (1.0 - age / policy.time_s))
    keys, inverse = np.unique(entries["item"], return_inverse=True)
    log_product = np.bincount(inverse, weights=np.log(factor), minlength=keys.size)
    return Demotion(keys.astype("<u4"), np.maximum(MIN_MULTIPLIER, np.exp(log_product)))


def log_multipliers(multipliers: NDArray[np.float64]) -> NDArray[np.float64]:
    """What a multiplier adds to a logit: log(m), finite (m ≥ MIN_MULTIPLIER)."""
    result: NDArray[np.float64] = np.log(np.maximum(MIN_MULTIPLIER, multipliers))
    return result


@dataclass(frozen=True)
class ShownList:
    """One impression as rotation needs it: whose answer, when, which items (in shown order)."""

    user_id: str
    recommendation_id: str
    ts_ms: int
    item_ids: tuple[str, ...]


class InvalidImpression(ValueError):
    """An impression line that cannot be folded; the message says why."""


def parse_impression_line(message: str) -> ShownList | None:
    """The impression in a recommend log line (``"message": "impression"``), or None when it is not one.

    Lines of other routes (``/rank``, similar items) return None: they do not rotate. Raises
    InvalidImpression for an impression whose fields break the contract (``rtrec.impressions``).
    Items may be ``[item_id, reason]`` pairs or objects with ``item_id``.
    """
    try:
        line = json.loads(message)
    except (ValueError, RecursionError) as error:
        raise InvalidImpression(f"not JSON: {type(error).__name__}") from None
    if not isinstance(line, dict) or line.get("kind") != KIND:
        return None
    if line.get("route") != ROTATED_ROUTE:
        return None
    try:
        user_id = validate_user_id(line.get("user_id"))
        recommendation_id = check_text(line.get("recommendation_id"), "recommendation_id", MAX_ID_LENGTH)
    except InvalidEvent as error:
        raise InvalidImpression(str(error)) from None
    ts = line.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts < 2**53:
        raise InvalidImpression("ts: must be epoch milliseconds")
    items = line.get("items")
    if not isinstance(items, list):
        raise InvalidImpression("items: must be a list")
    item_ids = []
    for n, item in enumerate(items[:1000]):
        raw = item.get("item_id") if isinstance(item, dict) else None
        if isinstance(item, list) and item:
            raw = item[0]
        try:
            item_ids.append(check_text(raw, f"items.{n}", MAX_ID_LENGTH))
        except InvalidEvent as error:
            raise InvalidImpression(str(error)) from None
    return ShownList(user_id, recommendation_id, ts, tuple(item_ids))


__all__ = [
    "MIN_MULTIPLIER",
    "SHOWN_CAPACITY",
    "SHOWN_DTYPE",
    "SHOWN_HORIZON_S",
    "Demotion",
    "InvalidImpression",
    "RotationPolicy",
    "ShownList",
    "chain_key",
    "demotion",
    "log_multipliers",
    "parse_impression_line",
]
