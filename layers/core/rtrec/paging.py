"""Recommendation ids, and paging through more recommendations without repeats.

Every answer's ``recommendation_id`` is a time-ordered UUID (version 7: 48 bits of epoch
milliseconds, 12 bits of snapshot marker, 62 random bits) in 32 hex digits: its bits seed the
answer's randomness (the exploration draw), its time dates the answer, and the marker says how many
of the user's events ingest had applied in that second when the answer read the state. A later page's id is
``<first page's id>-<page>-<8 random hex>``.

``GET /v1/recommendations?after=<id>`` answers the page after the one ``id`` names (within
``PAGING_WINDOW_SECONDS`` of the first page, at most ``MAX_PAGES`` pages). Nothing is stored per
answer: the earlier pages are computed again, deterministically (same seeds, same request, the user's
state as it was when the first page was answered: events applied since are left out of the history),
and excluded; so are the items the chain's impressions put in the user's ``shown`` list, once they
have arrived, which covers what a recomputation cannot see (events older than the 50 kept, parameters
that changed between pages).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.catalog import ItemFilter
from rtrec.features import HistoryStep
from rtrec.rotation import Demotion, RotationPolicy, chain_key, demotion
from rtrec.state import Interaction, UserState, event_key, item_key

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rtrec.recommender import Outcome, Recommender

MAX_PAGES = 20
DEFAULT_PAGING_WINDOW_S = 30 * 60
# Ids of a clock a little ahead (another container) are accepted; further ahead is not an id we made.
MAX_ID_SKEW_MS = 5 * 60 * 1000
# What `after` accepts (also the OpenAPI pattern): a first page's id, or a later page's (pages 2..MAX_PAGES).
AFTER_PATTERN = r"^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}(-([2-9]|1[0-9]|20)-[0-9a-f]{8})?$"
_ID = re.compile(AFTER_PATTERN)


class InvalidCursor(ValueError):
    """An ``after`` value that names no page this service can continue; the message says why."""


def new_root(now_ms: int, marker: int = 0, random_bytes: bytes | None = None) -> str:
    """A first page's id: a version-7 UUID of ``now_ms`` and ``marker`` (``snapshot_marker``), 32 hex."""
    rand_b = int.from_bytes(random_bytes if random_bytes is not None else os.urandom(8), "big") & (
        (1 << 62) - 1
    )
    rand_a = min(max(0, marker), 0xFFF)
    value = (now_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"


def page_id(root: str, page: int) -> str:
    """The id of page ``page`` (≥ 2) of ``root``'s chain: unique per answer, naming its chain and page."""
    return root if page == 1 else f"{root}-{page}-{os.urandom(4).hex()}"


def page_seed(root: str, page: int) -> int | list[int]:
    """The seed of a page's randomness: the first page's is its id's 128 bits (as before paging)."""
    return int(root, 16) if page == 1 else [int(root, 16), page]


@dataclass(frozen=True)
class Cursor:
    """Where an ``after`` value points: the chain's first page id, the page it names, when the chain began."""

    root: str
    page: int
    issued_ms: int
    marker: int = 0

    @property
    def chain(self) -> int:
        return chain_key(self.root)


def parse_cursor(text: str) -> Cursor:
    """The page an id names; InvalidCursor when it is not the id of a recommendations answer."""
    if _ID.fullmatch(text) is None:
        raise InvalidCursor("must be the recommendation_id of an earlier GET /v1/recommendations answer")
    root, _, rest = text.partition("-")
    page = int(rest.partition("-")[0]) if rest else 1
    return Cursor(root, page, int(root[:12], 16), int(root[13:16], 16))


def check_cursor(cursor: Cursor, now_ms: int, window_s: int) -> None:
    """Refuse a chain that has expired, runs past MAX_PAGES, or was dated in the future."""
    if cursor.issued_ms > now_ms + MAX_ID_SKEW_MS:
        raise InvalidCursor("is dated in the future; it is not an id this service made")
    if now_ms - cursor.issued_ms > window_s * 1000:
        minutes = window_s // 60
        raise InvalidCursor(
            f"has expired: pages continue for {minutes} minutes after the first; ask again without `after`"
        )
    if cursor.page >= MAX_PAGES:
        raise InvalidCursor(f"is the last page: a list has at most {MAX_PAGES} pages")


@dataclass(frozen=True)
class StateAt:
    """A user's state as serving saw it at an earlier time (events applied since left out)."""

    seen: NDArray[np.uint32]
    interests: dict[str, Any]
    recent: tuple[HistoryStep, ...]

    def history(self) -> list[HistoryStep]:
        return list(self.recent)


def snapshot_marker(state: UserState | None, now_ms: int) -> int:
    """How many of the user's events ingest applied in ``now_ms``'s second (at most 4,095)."""
    if state is None:
        return 0
    return min(0xFFF, int((state.event_applied_at == now_ms // 1000).sum()))


def state_at(state: UserState, at_ms: int, marker: int = 0) -> StateAt:
    """The history and seen set as an answer at ``at_ms`` read them: events applied later left out.

    Ingest records to the second when it applied each event, in application order; of the events
    applied in ``at_ms``'s second the first ``marker`` had been applied when the answer read the
    state. Exact while the user has fewer than 50 events since (older ones the new events pushed out
    of ``recent`` cannot be brought back); interests stay as they are now.
    """
    at_s = at_ms // 1000
    applied = state.event_applied_at.astype(np.int64)
    later_keys = set(state.event_keys[applied > at_s].tolist())
    later_keys.update(state.event_keys[applied == at_s][marker:].tolist())
    kept: list[Interaction] = []
    later: list[Interaction] = []
    for interaction in state.recent:
        (later if event_key(interaction.event_id) in later_keys else kept).append(interaction)
    seen = state.seen
    if later:
        still_seen = {item_key(i.item_id) for i in kept}
        new_keys = np.fromiter({item_key(i.item_id) for i in later} - still_seen, dtype="<u4")
        seen = seen[~np.isin(seen, new_keys)]
    return StateAt(seen, dict(state.interests), tuple(HistoryStep(i.item_id, i.type, i.value) for i in kept))


@dataclass(frozen=True)
class PageRequest:
    """The parameters a page is answered with (every page of a chain should repeat the first's)."""

    k: int
    genres: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    item_filter: ItemFilter | None = None


def recommend_page(
    recommender: Recommender,
    state: UserState | None,
    request: PageRequest,
    root: str,
    page: int,
    now_ms: int,
    rotation: RotationPolicy,
) -> Outcome:
    """Page ``page`` of the chain ``root``.

    The first page is an ordinary answer: the user's state now, recently shown items rotated down.
    Every later page is computed from the state *as of the first page* (``state_at`` with the id's
    time and marker: a list is one snapshot, a fresh first page reflects what happened since), so the
    earlier pages are computed again exactly and excluded. Finally items the user interacted with
    since, or that the chain's folded impressions say were shown, are dropped: such a page can hold
    fewer than ``k`` items.
    """
    chain = chain_key(root)
    if page == 1:
        demoted = demotion(state.shown, now_ms // 1000, rotation, skip_chain=chain) if state else None
        return _answer(recommender, state, request, root, 1, request.exclude, demoted)
    issued_ms, marker = int(root[:12], 16), int(root[13:16], 16)
    snapshot, demoted_then = None, None
    if state is not None:
        snapshot = state_at(state, issued_ms, marker)
        issued_s = issued_ms // 1000
        demoted_then = demotion(state.shown, issued_s, rotation, skip_chain=chain, shown_before_s=issued_s)
    excluded = list(request.exclude)
    for earlier in range(1, page):
        outcome = _answer(recommender, snapshot, request, root, earlier, excluded, demoted_then)
        excluded += item_ids(recommender, outcome)
    outcome = _answer(recommender, snapshot, request, root, page, excluded, demoted_then)
    if state is not None:
        # Never a seen item, nor one the chain's impressions (folded by now, seconds behind) showed.
        blocked = np.concatenate([state.seen, state.shown["item"][state.shown["chain"] == chain]])
        keys = np.array([item_key(i) for i in item_ids(recommender, outcome)], dtype="<u4")
        keep = ~np.isin(keys, blocked)
        outcome.picks = [pick for pick, kept in zip(outcome.picks, keep.tolist(), strict=True) if kept]
    return outcome


def _answer(
    recommender: Recommender,
    state: Any,
    request: PageRequest,
    root: str,
    page: int,
    excluded: Sequence[str],
    demoted: Demotion | None,
) -> Outcome:
    return recommender.recommend(
        state,
        request.k,
        np.random.default_rng(page_seed(root, page)),
        filter_genres=request.genres,
        exclude_item_ids=tuple(excluded),
        item_filter=request.item_filter,
        demotion=demoted if demoted is not None and len(demoted) else None,
    )


def item_ids(recommender: Recommender, outcome: Outcome) -> list[str]:
    """The item ids of an outcome's picks, in order."""
    return [recommender.item_id_at(p.index) for p in outcome.picks]
