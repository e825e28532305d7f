"""Any catalog end to end on the local stack: import, events, recommendations, filters, similar items.

    python -m demo.catalog --data ecommerce [--model-dir DIR] [--users 40]

`make demo DATA=ecommerce` runs this with the generated e-commerce dataset (`python -m dataio.synthetic`)
and a model trained on it (`make model DATA=ecommerce`, into .cache/models/ecommerce). The catalog goes
into the stack's CatalogTable with the import path (`rtrec.stores.catalog`), users' events through
`POST /v1/events`, and everything else through the public routes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataio import adapter_for
from demo.movielens import Api
from infra.local.stack import REPO_ROOT, LocalStack, configure_logging
from rtrec.catalog import CatalogItem
from rtrec.stores.catalog import CatalogStore

NEW_ARRIVALS = "New arrivals"


STEPS = 6


def step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


# How a dataset's model is trained when the demo finds none: the generated shop's hyper-parameters are the
# ones chosen on its validation split (model_build/report-ecommerce.md); other datasets take the defaults.
TRAINING_ARGS = {"ecommerce": ["--epochs", "4", "--learning-rate", "1.5e-2", "--dropout", "0.05"]}


def default_model_dir(name: str) -> Path:
    trained = REPO_ROOT / ".cache" / "models" / name
    return trained if (trained / "model.tflite").exists() else REPO_ROOT / "layers" / "model" / "model"


def trained_model_dir(spec: str, name: str) -> Path:
    """The dataset's own model, trained first when there is none (the shipped model knows other items)."""
    model_dir = default_model_dir(name)
    if model_dir == REPO_ROOT / "layers" / "model" / "model" and name != "movielens-100k":
        command = [sys.executable, "-m", "model_build.train", "--data", spec, "--modes", "float32"]
        command += TRAINING_ARGS.get(spec, [])
        print(f"      no model trained on {name} yet: training one (several minutes) ...", flush=True)
        print(f"      $ python -m {' '.join(command[2:])}", flush=True)
        subprocess.run(command, cwd=REPO_ROOT, check=True)
        model_dir = default_model_dir(name)
    return model_dir


def show(title: str, body: dict[str, Any], limit: int = 5) -> None:
    print(f"      {title}: source {body.get('source')}, {len(body.get('items', []))} items")
    for item in body.get("items", [])[:limit]:
        categories = ", ".join(item["categories"][:2])
        print(f"        {item['item_id']:<14} {item['reason']:<9} {item['score']:>9.4f}  {categories}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="ecommerce", help="ecommerce, movielens or a dataset directory")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--users", type=int, default=40, help="users whose recent events are replayed")
    parser.add_argument("--events-per-user", type=int, default=30)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    started = time.perf_counter()

    step(1, f"loading the {args.data} dataset through its adapter ...")
    data = adapter_for(args.data).load().sorted_by_time()
    model_dir = args.model_dir or trained_model_dir(args.data, data.name)
    rows = data.interactions
    sizes = f"{len(rows)} interactions, {len(data.items)} items, {len(data.categories)} categories"
    print(f"      {sizes}; model {model_dir}")

    step(2, "starting the local stack ...")
    environment = {
        "MODEL_DIR": str(model_dir),
        "POWERTOOLS_LOG_LEVEL": args.log_level,
        "PER_USER_EVENT_RATE": "0",  # a replay of history, far above a person's pace
        "PER_USER_REQUEST_RATE": "0",
        "CATALOG_REFRESH_S": "0.5",
        "PROMOTION_SHARE": "0.2",
        "PROMOTION_FILTER": f"category={NEW_ARRIVALS}",
    }
    stack = LocalStack(environment=environment, poll_interval_s=0.05, drop_metric_lines=True)
    stack.start()
    try:
        api = Api(stack)
        resources = stack.describe()["resources"]
        clients = stack.clients("dynamodb")
        catalog = CatalogStore(clients["dynamodb"], resources["CatalogTable"]["Ref"])

        step(3, "importing the catalog into the CatalogTable (the import CLI's path) ...")
        t0 = time.perf_counter()
        unwritten = []
        for start in range(0, len(data.items), 500):
            unwritten += catalog.put_many(data.items[start : start + 500])
        print(f"      {len(data.items) - len(unwritten)} items written in {time.perf_counter() - t0:.1f} s")

        step(
            4, f"replaying the last {args.events_per_user} events of {args.users} users (POST /v1/events) ..."
        )
        sequences = rows.user_sequences()
        users = sorted(sequences, key=lambda u: -len(sequences[u]))[: args.users]
        now_ms = int(time.time() * 1000)
        accepted = 0
        for user in users:
            picked = sequences[user][-args.events_per_user :]
            shift = now_ms - 1000 - int(rows.timestamps_ms[picked[-1]])
            events = []
            for row in picked.tolist():
                event = {
                    "event_id": f"{user}-{row}",
                    "item_id": str(rows.item_ids[row]),
                    "type": str(rows.types[row]),
                    "timestamp": int(rows.timestamps_ms[row]) + shift,
                }
                if not np.isnan(rows.values[row]):
                    event["value"] = float(rows.values[row])
                events.append(event)
            accepted += api.post_events(str(user), events)["accepted"]
        stack.wait_for_stream(120)
        print(f"      {accepted} events accepted and folded into {len(users)} users' state")

        user = str(users[0])
        step(5, f"recommendations for {user}: plain, by category, by attribute, similar items ...")
        plain = api.recommendations(user, 10)
        show("GET /v1/recommendations?k=10", plain)
        favourite = Counter(c for item in plain["items"] for c in item["categories"][:1]).most_common(1)
        if favourite:
            category = favourite[0][0]
            _, body = api.call("GET", f"/v1/recommendations?k=5&category={_quote(category)}", user)
            show(f"category={category}", body)
        prices = [i.attributes["price"] for i in data.items if isinstance(i.attributes.get("price"), float)]
        if prices:
            cheap = float(np.percentile(prices, 25))
            _, body = api.call("GET", f"/v1/recommendations?k=5&filter={_quote(f'price<={cheap:.2f}')}", user)
            show(f"filter=price<={cheap:.2f}", body)
        status, body = api.call("GET", "/v1/recommendations?filter=price<=cheap", user)
        print(f"      filter=price<=cheap -> {status} {body.get('errors')}")
        last_item = str(rows.item_ids[sequences[users[0]][-1]])
        _, body = api.call("GET", f"/v1/items/{_quote(last_item)}/similar?k=5", user)
        show(f"GET /v1/items/{last_item}/similar", body)

        step(6, "a new item, never seen by the model, arrives in the catalog ...")
        shown = {item["item_id"] for item in plain["items"]}
        base = next((i for i in data.items if i.item_id in shown), data.items[0])
        new_item = CatalogItem(
            "brand-new-1",
            (*base.categories, NEW_ARRIVALS),
            "A new arrival",
            dict(base.attributes),
            True,
            now_ms,
        )
        catalog.put(new_item)
        time.sleep(0.6)  # the recommend function looks at the catalog's change feed every CATALOG_REFRESH_S
        after = api.recommendations(user, 10)
        # A promotion slot goes to it unless the organic list already holds it (as a new item or by score).
        placed = [(n + 1, i["reason"]) for n, i in enumerate(after["items"]) if i["item_id"] == "brand-new-1"]
        print(f"      in the next answer (position, reason): {placed or 'not shown'}")
        _, body = api.call("GET", "/v1/items/brand-new-1/similar?k=5", user)
        show("its neighbours, from its categories", body)
        catalog.put(CatalogItem(**{**new_item.__dict__, "available": False}))
        time.sleep(0.6)
        gone = api.recommendations(user, 10)
        still_there = "brand-new-1" in {i["item_id"] for i in gone["items"]}
        print(f"      made unavailable: in the next answer? {still_there}")
    finally:
        stack.stop()
    print(f"\ncatalog demo took {time.perf_counter() - started:.0f} s")
    return 0


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


if __name__ == "__main__":
    sys.exit(main())
