"""Rotation and paging as served: refreshed lists, their quality, and pages without repeats.

    python -m evaluation.rotation [--users N] [--out evaluation/rotation.json]

The template's functions run in this process (``infra.local.inprocess``) on an in-memory user-state
table: each MovieLens-100k user's history (everything but the last rating, in time order) is folded
into their state with the ingest fold, then ``GET /v1/recommendations?k=10`` is answered by the
recommend handler, its impression line goes through the template's log subscription to the ingest
handler (``{"awslogs": ...}``), which folds it into the shown list, and the list is asked for again
with no new event (a refresh), once per rotation rate. The hit is the user's last rating (HR@10, as
in ``evaluation.as_served``). Paging: five pages of ten through ``after``, with the user rating an
item of page 2 before page 3 is asked for; every page's items are compared with every earlier page's.
Exploration (template: 20 % of answers) draws from each answer's random id, so the numbers move by
a few thousandths between runs.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

from evaluation.as_served import histories
from evaluation.replay import InMemoryStateTable
from infra.local.inprocess import InProcessService
from infra.local.log_subscriptions import LogSubscriptions

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
K = 10
PAGES = 5
RATES = (0.0, 0.1, 0.3, 1.0)


def _items(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def run(limit: int | None) -> dict[str, Any]:
    from rtrec.events import Event
    from rtrec.rotation import RotationPolicy
    from rtrec.state import fold
    from rtrec.stores.user_state import UserStateStore

    users = histories(limit)
    environment = {"PER_USER_REQUEST_RATE": "0", "POWERTOOLS_LOG_LEVEL": "INFO"}
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with InProcessService(TEMPLATE, environment, drop_metric_lines=True) as service:
        service.log_subscriptions.stop()  # again, without echoing thousands of log lines
        service.log_subscriptions = LogSubscriptions(service.template.document, service.functions).install(
            passthrough=False
        )
        ingest = service.functions[service.stream_source.function_id]
        table = InMemoryStateTable(ingest.environment["USER_STATE_TABLE"])
        service.replace_user_state_store(UserStateStore(table))
        recommend = service.route_function("GET", "/v1/recommendations")
        catalog = recommend.module.recommender.catalog
        default_rate = recommend.module.rotation.rate

        def reset(user: str, history: list[tuple[str, float, int]]) -> None:
            # Applied a minute ago, as if the events had come through the stream (the real fold).
            now_ms = int(time.time() * 1000) - 60_000
            shift = now_ms - 120_000 - history[-1][2]
            events = [
                Event(user, f"{user}-{n}", item, "rating", ts + shift, stars)
                for n, (item, stars, ts) in enumerate(history)
            ]
            table.items[user] = fold(None, user, events, catalog, now_ms).state.to_item()

        def get(user: str, query: str) -> dict[str, Any]:
            status, body = service.http("GET", "/v1/recommendations", user, query=query)
            if status != 200:
                raise RuntimeError(f"GET /v1/recommendations?{query} answered {status}: {body}")
            return body

        refresh: dict[str, Any] = {}
        for rate in RATES:
            recommend.module.rotation = RotationPolicy(rate=rate, time_s=recommend.module.rotation.time_s)
            hits_first = hits_refresh = new_items = 0
            started = time.perf_counter()
            for user, history, target in users:
                reset(user, history)
                first = _items(get(user, f"k={K}"))
                service.deliver_logs()  # the impression reaches the state (seconds later in AWS)
                again = _items(get(user, f"k={K}"))
                service.deliver_logs()
                hits_first += target in first
                hits_refresh += target in again
                new_items += len(set(again) - set(first))
            refresh[f"{rate:g}"] = {
                "users": len(users),
                "new_share": round(new_items / (K * len(users)), 4),
                "hr@10_first": round(hits_first / len(users), 4),
                "hr@10_refresh": round(hits_refresh / len(users), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"rotation rate {rate:g}: {refresh[f'{rate:g}']}", flush=True)

        recommend.module.rotation = RotationPolicy(rate=default_rate, time_s=recommend.module.rotation.time_s)
        overlapping = pages_short = users_paged = 0
        started = time.perf_counter()
        for user, history, _ in users:
            reset(user, history)
            body = get(user, f"k={K}")
            shown = [_items(body)]
            for page in range(2, PAGES + 1):
                if page == 3:  # a new event between pages: the user rates page 2's first item
                    now = int(time.time() * 1000)
                    event = Event(user, f"{user}-paging", shown[-1][0], "rating", now, 4.0)
                    service.ingest([(user, event.to_bytes())])
                body = get(user, f"k={K}&after={body['recommendation_id']}")
                items = _items(body)
                overlapping += len(set(items) & {i for earlier in shown for i in earlier})
                pages_short += len(items) < K
                shown.append(items)
            service.deliver_logs()
            users_paged += 1
        paging = {
            "users": users_paged,
            "pages": PAGES,
            "items_repeated_across_pages": overlapping,
            "pages_shorter_than_k": pages_short,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"paging: {paging}", flush=True)
    return {"k": K, "refresh": refresh, "paging": paging}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, help="only the first N users (default: all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "evaluation" / "rotation.json")
    args = parser.parse_args()
    results = run(args.users)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
