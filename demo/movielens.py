"""`make demo`: the whole service on this machine, fed with MovieLens-100k, in under three minutes.

Starts the local stack (moto + the real handlers wired from template.yaml), replays a slice of
MovieLens ratings through POST /v1/events, shows a few users' top-10 before and after a burst
of new events, measures freshness (event accepted -> visible in the next recommendation), and
stops everything. Titles are read at run time from the dataset wheel; they are never stored.

python -m demo.movielens [--events N] [--users N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from typing import Any

import numpy as np

from dataio import movielens as data_module
from infra.local.stack import DEFAULT_ARCHIVE_DIR, REPO_ROOT, LocalStack, configure_logging
from rtrec.features import Catalog

MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
BURST_SIZE = 8
TITLE_WIDTH = 40
POST_CHUNK = 100  # the API's per-request limit


class Api:
    """A tiny JSON client for the local HTTP API."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, user: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            token = self.tokens.setdefault(user, self.stack.token(user))
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            self.stack.api_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def recommendations(self, user: str, k: int = 10) -> dict:
        status, body = self.call("GET", f"/v1/recommendations?k={k}", user)
        if status != 200:
            raise RuntimeError(f"GET /v1/recommendations -> {status}: {body}")
        return body

    def post_events(self, user: str, events: list[dict]) -> dict:
        status, body = self.call("POST", "/v1/events", user, {"events": events})
        if status != 202:
            raise RuntimeError(f"POST /v1/events -> {status}: {body}")
        return body


def load_titles() -> dict[str, str]:
    """Movie titles by item id, read from the dataset wheel now (never written anywhere)."""
    return data_module.titles_from_wheel(data_module.fetch_wheel())


def step(number: int, text: str) -> None:
    print(f"\n[{number}/5] {text}", flush=True)


def replay_slice(api: Api, data: data_module.Interactions, rows: np.ndarray, shift_ms: int) -> int:
    """POST the slice in time order, one request per run of a user's consecutive events (≤ 100)."""
    posted = 0
    run_user, run = None, []

    def flush() -> None:
        nonlocal posted
        if run:
            result = api.post_events(run_user, run)
            posted += result["accepted"]
            run.clear()

    for row in rows:
        user, item = f"ml-{data.user_ids[row]}", str(data.item_ids[row])
        if user != run_user or len(run) == POST_CHUNK:
            flush()
            run_user = user
        run.append(
            {
                "event_id": f"ml-{data.user_ids[row]}-{item}",
                "item_id": item,
                "type": "rating",
                "value": float(data.ratings[row]),
                "timestamp": int(data.timestamps[row]) * 1000 + shift_ms,
            }
        )
    flush()
    return posted


def top_genres(interests: dict[str, float], n: int = 3) -> str:
    best = sorted(interests.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{g} {v:.0%}" for g, v in best)


def burst_for(user_interests: dict[str, float], catalog: Catalog, seen: set[str]) -> tuple[str, list[str]]:
    """The genre this user cares least about (among distinctive ones) and its most popular unseen movies."""
    candidates = ["Horror", "Children's", "Sci-Fi", "Romance", "Musical", "Western"]
    genre = min(candidates, key=lambda g: user_interests.get(g, 0.0))
    genre_index = catalog.categories.index(genre)
    order = np.argsort(-catalog.popularity, kind="stable")
    items = [
        catalog.item_ids[i]
        for i in order
        if genre_index in catalog.category_ids[i] and catalog.item_ids[i] not in seen
    ]
    return genre, items[:BURST_SIZE]


def side_by_side(before: list[dict], after: list[dict], titles: dict[str, str]) -> str:
    def cell(entry: dict | None) -> str:
        if entry is None:
            return ""
        title = titles.get(entry["item_id"], entry["item_id"])
        text = f"{title[: TITLE_WIDTH - 1]}…" if len(title) > TITLE_WIDTH else title
        marker = "*" if entry.get("reason") == "explore" else " "
        return f"{text:<{TITLE_WIDTH}}{marker}"

    before_ids = {e["item_id"] for e in before}
    lines = [f"      {'before':<{TITLE_WIDTH + 1}}   after   (+ = new in the list, * = exploration slot)"]
    for i in range(max(len(before), len(after))):
        left = cell(before[i] if i < len(before) else None)
        right_entry = after[i] if i < len(after) else None
        new = "+" if right_entry and right_entry["item_id"] not in before_ids else " "
        lines.append(f"  {i + 1:>2}. {left:<{TITLE_WIDTH + 1}} {new} {cell(right_entry)}")
    return "\n".join(lines)


def measure_freshness(api: Api, users: list[str], probes_per_user: int) -> list[float]:
    """Seconds from a 202 for a 'view' of the user's #1 item to the first answer without it.

    Items a user has interacted with are excluded from recommendations, so the item
    disappearing from the list is the state change becoming visible.
    """
    samples = []
    for user in users:
        for _ in range(probes_per_user):
            first = api.recommendations(user)["items"][0]["item_id"]
            event = {
                "event_id": f"probe-{time.time_ns()}",
                "item_id": first,
                "type": "view",
                "timestamp": int(time.time() * 1000),
            }
            api.post_events(user, [event])
            accepted = time.perf_counter()
            deadline = accepted + 30
            while time.perf_counter() < deadline:
                items = [e["item_id"] for e in api.recommendations(user)["items"]]
                if first not in items:
                    samples.append(time.perf_counter() - accepted)
                    break
                time.sleep(0.02)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000, help="MovieLens ratings to replay")
    parser.add_argument("--users", type=int, default=3, help="users shown before/after a burst")
    parser.add_argument(
        "--log-level", default="WARNING", help="level of the local stack's and handlers' logs"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    started = time.perf_counter()
    if not (MODEL_DIR / "model.tflite").exists():
        print(
            f"No model artifact in {MODEL_DIR.relative_to(REPO_ROOT)}: run `make model` first.",
            file=sys.stderr,
        )
        return 1

    print("rtrec local demo: moto as AWS, the real Lambda handlers wired from template.yaml, no Docker")
    step(1, "loading MovieLens-100k (recbole wheel, sha256 verified) and titles ...")
    data, _ = data_module.load_movielens()
    titles = load_titles()
    catalog = Catalog.load(MODEL_DIR)
    order = np.argsort(data.timestamps, kind="stable")
    cutoff = data_module.time_cutoff(data)
    slice_rows = order[data.timestamps[order] <= cutoff][-args.events :]
    print(f"      {len(data)} ratings, {len(titles)} titles; model catalog: {len(catalog)} items")

    step(2, "starting the local stack ...")
    # Handler logs stay in this terminal (prefixed with the function) at the chosen level;
    # CloudWatch metric lines are dropped to keep the narrative readable.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # The demo replays weeks of history in seconds, far above the per-user limits a person's client
    # stays under; the limits are off here (their behaviour is tested in tests/functions/test_edges.py).
    environment = {
        "POWERTOOLS_LOG_LEVEL": args.log_level,
        "PER_USER_EVENT_RATE": "0",
        "PER_USER_REQUEST_RATE": "0",
    }
    stack = LocalStack(
        environment=environment, poll_interval_s=0.05, drop_metric_lines=True, archive_dir=DEFAULT_ARCHIVE_DIR
    )
    stack.start()
    try:
        api = Api(stack)
        print(f"      API {stack.api_url}  routes: {', '.join(stack.describe()['routes'])}")
        print(f"      stream, table and queue created in moto ({stack.aws_endpoint_url}) from template.yaml")
        status, _ = api.call("GET", "/v1/recommendations", None)
        print(f"      GET /v1/recommendations without a token -> {status}")

        # Shift the slice so that its newest rating happened a second ago: the API accepts
        # real-time events (not 1998 timestamps), and the gaps between events are kept.
        shift_ms = int(time.time() * 1000) - 1000 - int(data.timestamps[slice_rows[-1]]) * 1000
        first_day = time.strftime("%Y-%m-%d", time.gmtime(int(data.timestamps[slice_rows[0]])))
        last_day = time.strftime("%Y-%m-%d", time.gmtime(int(data.timestamps[slice_rows[-1]])))
        step(
            3, f"replaying {len(slice_rows)} ratings ({first_day} .. {last_day}) through POST /v1/events ..."
        )
        t0 = time.perf_counter()
        accepted = replay_slice(api, data, slice_rows, shift_ms)
        posted_s = time.perf_counter() - t0
        stack.wait_for_stream(120)
        ingested_s = time.perf_counter() - t0
        users = Counter(f"ml-{data.user_ids[r]}" for r in slice_rows)
        print(
            f"      {accepted} accepted in {posted_s:.1f} s ({accepted / posted_s:.0f} events/s); "
            f"stream drained into {len(users)} users' state after {ingested_s:.1f} s"
        )

        step(4, f"top-10 before and after a burst of {BURST_SIZE} five-star ratings in a new genre")
        demo_users = [user for user, _ in users.most_common(args.users)]
        seen_by_user: dict[str, set[str]] = {}
        for row in slice_rows:
            seen_by_user.setdefault(f"ml-{data.user_ids[row]}", set()).add(str(data.item_ids[row]))
        for user in demo_users:
            before = api.recommendations(user)
            _, interests = api.call("GET", "/v1/interests", user)
            genre, burst = burst_for(interests["interests"], catalog, seen_by_user[user])
            now = int(time.time() * 1000)
            api.post_events(
                user,
                [
                    {
                        "event_id": f"burst-{user}-{i}",
                        "item_id": item,
                        "type": "rating",
                        "value": 5,
                        "timestamp": now,
                    }
                    for i, item in enumerate(burst)
                ],
            )
            stack.wait_for_stream(30)
            after = api.recommendations(user)
            _, interests_after = api.call("GET", "/v1/interests", user)
            changed = len({e["item_id"] for e in after["items"]} - {e["item_id"] for e in before["items"]})
            burst_titles = ", ".join(titles.get(item, item) for item in burst[:3])
            print(f"\n  user {user} ({users[user]} ratings in the slice)")
            print(f"      burst of {genre}: {burst_titles}, ...")
            print(f"      interests before: {top_genres(interests['interests'])}")
            print(f"      interests after:  {top_genres(interests_after['interests'])}")
            print(side_by_side(before["items"], after["items"], titles))
            print(
                f"      {changed} of 10 items changed; model {after['model_version']}, "
                f"source {after['source']}"
            )

        step(5, "freshness: event accepted (202) -> visible in the next GET /v1/recommendations")
        samples = measure_freshness(api, demo_users, probes_per_user=2)
        if samples:
            print(
                f"      n={len(samples)}  median {statistics.median(samples):.2f} s  "
                f"max {max(samples):.2f} s (the mapping's batching window from template.yaml: "
                f"{stack.pollers[0].source.batching_window_s:.0f} s)"
            )
        else:
            print("      no probe became visible within 30 s")
        if stack.archive is not None:
            print(
                f"      event archive: {stack.archive.records} records under {stack.archive.root}/events/ "
                f"(query it: PYTHONPATH=layers/core .venv/bin/python -m dataio.archive {stack.archive.root})"
            )
    finally:
        t_stop = time.perf_counter()
        stack.stop()
        logging.shutdown()
    print(
        f"\nstopped cleanly in {time.perf_counter() - t_stop:.1f} s; "
        f"demo took {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
