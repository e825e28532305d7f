"""Impressions: what an answer showed, as one record for attribution and experiment read-outs.

The recommend function writes one per ranked answer as a structured log line (`"message": "impression"`);
a CloudWatch Logs subscription filter on its log group (`{ $.message = "impression" }`) ships those
lines through Firehose to the event archive under `events/kind=impression/dt=<day>/` (template.yaml
`ImpressionDeliveryStream`; locally `infra.local.archive.ImpressionSink`), where events that carry the
answer's `recommendation_id` are joined to them (`sql/attribution_*.sql`: click-through by position,
reason, variant and model version). A log line costs the request a few microseconds, a synchronous
put a network round trip (bench/impressions.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KIND = "impression"
MESSAGE = "impression"  # the log line's message, what the subscription filter matches
# The CloudWatch Logs filter pattern that selects impression lines (JSON log lines, Powertools).
FILTER_PATTERN = '{ $.message = "impression" }'


def impression_record(
    recommendation_id: str,
    user_id: str,
    route: str,
    model_version: str | None,
    items: Sequence[tuple[str, str]],
    ts_ms: int,
    variant: str | None = None,
    *,
    experiment: str | None = None,
    source: str | None = None,
    degraded: bool = False,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    """The impression of one answer: items as ``[item_id, reason]`` in shown order (position = index + 1).

    ``experiment``/``variant`` name the arm the answer was served under (None outside experiments);
    ``source`` and ``degraded`` are the answer's; ``latency_ms`` is the handler's time until the
    answer was ready (the guardrails of the experiment report read it).
    """
    return {
        "kind": KIND,
        "recommendation_id": recommendation_id,
        "user_id": user_id,
        "route": route,
        "experiment": experiment,
        "variant": variant,
        "model_version": model_version,
        "source": source,
        "degraded": degraded,
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),
        "ts": ts_ms,
        "items": [[item_id, reason] for item_id, reason in items],
    }


def is_impression_line(record: Any) -> bool:
    """Whether a parsed log line is an impression (what the subscription filter pattern selects)."""
    return isinstance(record, dict) and record.get("message") == MESSAGE and record.get("kind") == KIND
