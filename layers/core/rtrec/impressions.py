"""Impressions: what an answer showed, as one record for attribution and experiment read-outs.

The recommend function writes one per ranked answer as a structured log line (`"message": "impression"`);
a log subscription can ship those lines to the event archive under `kind=impression`, where events that
carry the answer's `recommendation_id` are joined to them (click-through by position, reason, variant
and model version). A log line costs the request almost nothing, unlike a synchronous put.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KIND = "impression"


def impression_record(
    recommendation_id: str,
    user_id: str,
    route: str,
    model_version: str | None,
    items: Sequence[tuple[str, str]],
    ts_ms: int,
    variant: str | None = None,
) -> dict[str, Any]:
    """The impression of one answer: items as ``[item_id, reason]`` in shown order (position = index + 1)."""
    return {
        "kind": KIND,
        "recommendation_id": recommendation_id,
        "user_id": user_id,
        "route": route,
        "variant": variant,
        "model_version": model_version,
        "ts": ts_ms,
        "items": [[item_id, reason] for item_id, reason in items],
    }
