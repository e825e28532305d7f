"""Quality as served: the leave-one-out test of model_build, answered by the real recommend handler.

    python -m evaluation.as_served [--users N] [--out evaluation/as_served.json]

Each MovieLens-100k user's history (everything but the last rating, in time order; ties in file
order) is folded into a state with the ingest fold, as if the events had come through the stream,
and `GET /v1/recommendations?k=10` is answered by `functions/recommend/app.py` with the template's
settings. The hit is the user's last rating. Variants change one setting at a time, so the cost of
each serving rule (exploration, the genre cap, the order of same-second events) is visible.
Exploration draws from each answer's random recommendation id, so rows with exploration vary by a
few thousandths between runs; rows without it are deterministic.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DEFAULTS = {
    "RETRIEVAL_SIZE": "128",
    "EXPLORATION_SHARE": "0.1",
    "EXPLORATION_RATE": "0.2",
    "GENRE_CAP_SHARE": "0.5",
}
NOW_MS = 1_800_000_000_000


class _Store:
    """The recommend handler's store, answering from prepared states."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def get(self, user_id: str, consistent: bool = True) -> Any:
        return self.states.get(user_id)


class _Context:
    function_name = "RecommendFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RecommendFunction"
    aws_request_id = "as-served"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _environment() -> None:
    template_env = {
        "USER_STATE_TABLE": "as-served",
        "MODEL_DIR": str(REPO_ROOT / "layers" / "model" / "model"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "rtrec",
        "POWERTOOLS_METRICS_NAMESPACE": "AsServed",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "PER_USER_REQUEST_RATE": "0",
        **TEMPLATE_DEFAULTS,
    }
    for name, value in template_env.items():
        os.environ.setdefault(name, value)


def histories(limit: int | None) -> list[tuple[str, list[tuple[str, float, int]], str]]:
    """(user, history as (item, stars, ts ms) oldest first, held-out item) per MovieLens user."""
    from dataio.movielens import load_movielens

    data, _ = load_movielens()
    order = np.argsort(data.timestamps, kind="stable")  # ties keep file order, as training does
    by_user: dict[str, list[int]] = {}
    for row in order.tolist():
        by_user.setdefault(str(data.user_ids[row]), []).append(row)
    users = []
    for user, rows in by_user.items():
        if len(rows) < 3:
            continue
        history = [
            (str(data.item_ids[r]), float(data.ratings[r]), int(data.timestamps[r]) * 1000) for r in rows
        ]
        users.append((user, history[:-1], history[-1][0]))
    return users[:limit] if limit else users


def evaluate(variants: dict[str, dict[str, Any]], limit: int | None) -> dict[str, dict[str, float]]:
    _environment()
    from functions.recommend import app
    from rtrec.events import Event
    from rtrec.state import fold

    store = _Store()
    app.user_states = store
    catalog = app.recommender.catalog
    base_config = app.recommender.config
    users = histories(limit)
    results: dict[str, dict[str, float]] = {}
    for name, variant in variants.items():
        app.recommender.config = _with(base_config, variant.get("config", {}))
        hits = ndcg = 0.0
        started = time.perf_counter()
        for user, history, target in users:
            events = [
                Event(user, _event_id(user, n, variant), item, "rating", ts, stars)
                for n, (item, stars, ts) in enumerate(history)
            ]
            state = fold(None, user, events, catalog, NOW_MS).state
            if variant.get("ties_by_event_id"):
                state.recent.sort(key=lambda i: (i.ts, i.event_id))  # the rule before arrival order
            store.states[user] = state
            event = _request(user)
            with contextlib.redirect_stdout(io.StringIO()):
                response = app.lambda_handler(event, _Context())
            items = [item["item_id"] for item in json.loads(response["body"])["items"]]
            if target in items:
                hits += 1
                ndcg += 1.0 / math.log2(items.index(target) + 2)
        results[name] = {
            "users": len(users),
            "hr@10": round(hits / len(users), 4),
            "ndcg@10": round(ndcg / len(users), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{name:<45} HR@10 {results[name]['hr@10']:.4f}  NDCG@10 {results[name]['ndcg@10']:.4f}",
            flush=True,
        )
    app.recommender.config = base_config
    return results


def _event_id(user: str, n: int, variant: dict[str, Any]) -> str:
    # Clients send random ids (UUIDs): with the old tie rule their order decided same-second events.
    return (
        uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{n}").hex if variant.get("random_ids", True) else f"{n:06d}"
    )


def _request(user: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "GET /v1/recommendations",
        "rawPath": "/v1/recommendations",
        "rawQueryString": "k=10",
        "queryStringParameters": {"k": "10"},
        "headers": {},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/recommendations", "sourceIp": "127.0.0.1"},
            "authorizer": {"jwt": {"claims": {"sub": user}, "scopes": []}},
            "requestId": uuid.uuid4().hex,
            "routeKey": "GET /v1/recommendations",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def _with(config: Any, changes: dict[str, Any]) -> Any:
    import dataclasses

    return dataclasses.replace(config, **changes)


VARIANTS: dict[str, dict[str, Any]] = {
    "as served (template defaults)": {},
    "exploration in every answer (before)": {"config": {"exploration_rate": 1.0}},
    "no exploration, ties by event id (before)": {
        "ties_by_event_id": True,
        "config": {"exploration_share": 0.0},
    },
    "no exploration": {"config": {"exploration_share": 0.0}},
    "exploration on 10% of answers": {"config": {"exploration_rate": 0.1}},
    "no exploration, no genre cap": {"config": {"exploration_share": 0.0, "genre_cap_share": 1.0}},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, help="only the first N users (default: all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "evaluation" / "as_served.json")
    args = parser.parse_args()
    results = evaluate(VARIANTS, args.users)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
