"""`make replay`: does real-time state pay? A streaming replay of MovieLens-100k through the real handlers.

1. Cut the ratings at the global time cutoff (model_build.data.time_cutoff). Train a model on the
   events before it only (model_build.train's training and export), so nothing after the cutoff
   leaks into the model.
2. Deploy the template into moto (in memory) and load the real ingest and recommend handlers
   with the template's environment, MODEL_DIR pointing at that model (infra.local.inprocess).
3. Ingest every user's pre-cutoff history through the ingest handler (Kinesis-shaped batches). All
   timestamps are moved forward together so that the newest is a minute old: the service refuses
   events from before 2000.
4. Replay every later event in time order. Before each event, ask GET /v1/recommendations (k=10)
   for that user and count a hit if the event's item is in the answer; then ingest the event.

Three recommenders are compared on the same events:
  live    the real service: state updated by every event (the answer before event n sees events < n)
  frozen  the real service with the state as it was at the cutoff (one answer per user, never updated)
  popular the 10 most popular training items the user has not interacted with yet

Exploration is switched off (EXPLORATION_SHARE=0) so the evaluation is deterministic.
Writes evaluation/replay.json and evaluation/replay.png.

python -m evaluation.replay [--epochs N] [--max-events N] [--retrain] [--moto]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
from botocore.exceptions import ClientError

from dataio.movielens import Interactions, load_movielens, time_cutoff
from infra.local.inprocess import InProcessService
from model_build import data as model_data
from model_build.metrics import summary
from rtrec.events import Event

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"
REPLAY_MODEL_DIR = model_data.WORK_DIR / "replay-model"
OUT_JSON = Path(__file__).resolve().parent / "replay.json"
OUT_CHART = Path(__file__).resolve().parent / "replay.png"
K = 10
VARIANTS = ("live", "frozen", "popular")


def subset(data: Interactions, mask: np.ndarray) -> Interactions:
    """The interactions selected by `mask`, with the full item table."""
    return replace(
        data,
        user_ids=data.user_ids[mask],
        item_ids=data.item_ids[mask],
        ratings=data.ratings[mask],
        timestamps=data.timestamps[mask],
    )


def train_history_model(history: Interactions, out_dir: Path, epochs: int, data_sha: str) -> None:
    """Train and export a model on pre-cutoff interactions only, with model_build's own pipeline."""
    from model_build import train as train_module
    from model_build.export import convert, write_artifact
    from model_build.model import build_serving_model

    splits = model_data.leave_one_out(history)
    catalog = model_data.build_catalog(history, splits)
    prepared = {
        "catalog": catalog,
        "splits": splits,
        "train": model_data.training_examples(splits, catalog),
        "valid": model_data.validation_examples(splits, catalog),
    }
    layers, _, history_metrics = train_module.train(prepared, epochs)
    export_model = build_serving_model(layers, batch_size=1)
    model_bytes = convert(
        export_model, train_module.ARTIFACT_MODE, train_module.representative_data(prepared["train"])
    )
    metadata = {
        "version": f"replay-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{train_module.ARTIFACT_MODE}",
        "quantization": train_module.ARTIFACT_MODE,
        "shortlist_size": train_module.SHORTLIST_SIZE,
        "data": {"wheel_sha256": data_sha, "split": "events at or before the global time cutoff only"},
        "training": {"epochs": epochs, "validation_history": history_metrics},
    }
    write_artifact(out_dir, model_bytes, catalog, layers.item_embedding.get_weights()[0], metadata)


def cached_model_epochs() -> int | None:
    """Epochs of the pre-cutoff model cached in REPLAY_MODEL_DIR, None without one; other epochs retrain."""
    marker = REPLAY_MODEL_DIR / "metadata.json"
    if not marker.exists():
        return None
    return json.loads(marker.read_text()).get("training", {}).get("epochs")


class InMemoryStateTable:
    """The UserState table in a dict, with DynamoDB's conditional-put semantics for the store.

    moto (de)serialises every large state item on each call, which makes a 20,000-event replay
    take hours; this keeps the handlers' code path (UserStateStore and everything above it) and
    replaces only the wire. `--moto` runs against moto instead.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: dict[str, dict] = {}
        self.meta = SimpleNamespace(client=self)

    def get_item(self, TableName: str, Key: dict, ConsistentRead: bool = False) -> dict:
        item = self.items.get(Key["user_id"])
        return {} if item is None else {"Item": copy.deepcopy(item)}

    def batch_get_item(self, RequestItems: dict) -> dict:
        keys = RequestItems[self.name]["Keys"]
        found = [copy.deepcopy(self.items[k["user_id"]]) for k in keys if k["user_id"] in self.items]
        return {"Responses": {self.name: found}, "UnprocessedKeys": {}}

    def delete_item(self, TableName: str, Key: dict) -> dict:
        self.items.pop(Key["user_id"], None)
        return {}

    def put_item(self, TableName: str, Item: dict, ConditionExpression: str, **kwargs: Any) -> dict:
        current = self.items.get(Item["user_id"])
        if ConditionExpression == "attribute_not_exists(user_id)":
            holds = current is None
        elif ConditionExpression == "version = :expected":
            holds = (
                current is not None and current["version"] == kwargs["ExpressionAttributeValues"][":expected"]
            )
        else:
            raise NotImplementedError(ConditionExpression)
        if not holds:
            error = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "condition failed"}}
            raise ClientError(error, "PutItem")
        self.items[Item["user_id"]] = copy.deepcopy(Item)
        return {}


def use_in_memory_state(service: InProcessService) -> None:
    """Give the ingest and recommend handlers one UserStateStore on an InMemoryStateTable."""
    from rtrec.stores.user_state import UserStateStore

    table_name = service.functions[service.stream_source.function_id].environment["USER_STATE_TABLE"]
    service.replace_user_state_store(UserStateStore(InMemoryStateTable(table_name)))


def to_event(data: Interactions, row: int, shift_ms: int) -> Event:
    """The rating as the service's event, its timestamp moved by `shift_ms` (see `run`)."""
    user, item = str(data.user_ids[row]), str(data.item_ids[row])
    return Event(
        user_id=user,
        event_id=f"ml-{user}-{item}",
        item_id=item,
        type="rating",
        ts=int(data.timestamps[row]) * 1000 + shift_ms,
        value=float(data.ratings[row]),
    )


def dead_letters(service: InProcessService) -> int:
    """Records ingest has dead-lettered: any means the replay feeds events the service refuses."""
    url = service.functions[service.stream_source.function_id].environment["DEAD_LETTER_QUEUE_URL"]
    name = "ApproximateNumberOfMessages"
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"]
    return int(attributes[name])


def top_items(service: InProcessService, user_id: str) -> list[str]:
    status, body = service.http("GET", "/v1/recommendations", user_id, query=f"k={K}")
    if status != 200:
        raise RuntimeError(f"GET /v1/recommendations answered {status}: {body}")
    return [item["item_id"] for item in body["items"]]


def rank_in(items: list[str], target: str) -> int:
    """0-based position of the target, or K when it is not in the list (a miss)."""
    return items.index(target) if target in items else K


def run(args: argparse.Namespace) -> dict:
    started = time.time()
    data, data_sha = load_movielens()
    cutoff = time_cutoff(data)
    order = np.argsort(data.timestamps, kind="stable")
    before = order[data.timestamps[order] <= cutoff]
    after = order[data.timestamps[order] > cutoff]
    if args.max_events:
        after = after[: args.max_events]
    history = subset(data, np.isin(np.arange(len(data)), before))
    # The service refuses timestamps before 2000 (a client bug) as poison, so the 1997-98 ratings are
    # moved forward together, the newest to a minute ago: order and gaps stay as they were.
    shift_ms = int(time.time() * 1000) - 60_000 - int(data.timestamps.max()) * 1000
    print(
        f"{len(data)} ratings; cutoff {cutoff} ({time.strftime('%Y-%m-%d', time.gmtime(cutoff))}): "
        f"{len(before)} before, {len(after)} replayed after",
        flush=True,
    )

    if args.retrain or cached_model_epochs() != args.epochs:
        print(f"training the replay model on pre-cutoff events ({args.epochs} epochs)...", flush=True)
        train_history_model(history, REPLAY_MODEL_DIR, args.epochs, data_sha)
    trained_at = time.time()

    # Exploration off: a deterministic answer per state, so the comparison is repeatable.
    environment = {"MODEL_DIR": str(REPLAY_MODEL_DIR), "EXPLORATION_SHARE": "0", "PER_USER_REQUEST_RATE": "0"}
    environment["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with InProcessService(TEMPLATE, environment, drop_metric_lines=True) as service:
        if not args.moto:
            use_in_memory_state(service)
        popularity = json.loads((REPLAY_MODEL_DIR / "items.json").read_text())
        ranked_popular = [
            item
            for _, item in sorted(
                zip(popularity["popularity"], popularity["item_ids"], strict=True), key=lambda pair: -pair[0]
            )
        ]
        seen: dict[str, set[str]] = {}
        by_user: dict[str, list[Event]] = {}
        for row in before:
            event = to_event(data, int(row), shift_ms)
            by_user.setdefault(event.user_id, []).append(event)
            seen.setdefault(event.user_id, set()).add(event.item_id)
        for user_id, events in by_user.items():
            for start in range(0, len(events), service.batch_size):
                chunk = events[start : start + service.batch_size]
                response = service.ingest((e.user_id, e.to_bytes()) for e in chunk)
                if response.get("batchItemFailures"):
                    raise RuntimeError(f"ingest reported failures for {user_id}: {response}")
        if dead_letters(service):
            raise RuntimeError(f"ingest dead-lettered {dead_letters(service)} history events: see the queue")
        print(f"history ingested for {len(by_user)} users in {time.time() - trained_at:.0f} s", flush=True)

        replay_users = sorted({str(data.user_ids[row]) for row in after})
        frozen = {user_id: top_items(service, user_id) for user_id in replay_users}

        ranks: dict[str, list[int]] = {v: [] for v in VARIANTS}
        with_history: list[bool] = []
        replay_started = time.time()
        for n, row in enumerate(after, start=1):
            event = to_event(data, int(row), shift_ms)
            user_seen = seen.setdefault(event.user_id, set())
            popular = [item for item in ranked_popular if item not in user_seen][:K]
            ranks["live"].append(rank_in(top_items(service, event.user_id), event.item_id))
            ranks["frozen"].append(rank_in(frozen[event.user_id], event.item_id))
            ranks["popular"].append(rank_in(popular, event.item_id))
            with_history.append(event.user_id in by_user)
            response = service.ingest([(event.user_id, event.to_bytes())])
            if response.get("batchItemFailures"):
                raise RuntimeError(f"ingest reported failures: {response}")
            user_seen.add(event.item_id)
            if n % 2000 == 0 or n == len(after):
                rate = n / max(time.time() - replay_started, 1e-9)
                live = summary(np.array(ranks["live"]), K)[f"HR@{K}"]
                print(f"  {n}/{len(after)} events ({rate:.0f}/s), live HR@{K} so far {live:.4f}", flush=True)

    known = np.array(with_history)
    results = {
        variant: {
            "all": summary(np.array(values), K),
            "users_with_history": summary(np.array(values)[known], K),
            "users_new_after_cutoff": summary(np.array(values)[~known], K),
        }
        for variant, values in ranks.items()
    }
    report = {
        "k": K,
        "time_cutoff": cutoff,
        "timestamp_shift_ms": shift_ms,
        "events_before_cutoff": len(before),
        "events_replayed": len(after),
        "events_of_users_with_history": int(known.sum()),
        "users_replayed": len(replay_users),
        "model": {"dir": str(REPLAY_MODEL_DIR.relative_to(REPO_ROOT)), "epochs": args.epochs},
        "exploration_share": 0.0,
        "user_state_store": "moto DynamoDB" if args.moto else "in-memory table behind UserStateStore",
        "results": results,
        "seconds": round(time.time() - started, 1),
    }
    return report


def print_table(report: dict) -> None:
    print(f"\nStreaming replay, {report['events_replayed']} events after the cutoff (k={report['k']})")
    print(f"{'recommender':<10} {'HR@10':>8} {'NDCG@10':>8}   {'HR@10 (users with history)':>27}")
    for variant in VARIANTS:
        res = report["results"][variant]
        print(
            f"{variant:<10} {res['all']['HR@10']:8.4f} {res['all']['NDCG@10']:8.4f}   "
            f"{res['users_with_history']['HR@10']:27.4f}"
        )


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    colors = ("#2a7", "#888", "#c84")
    for axis, metric in zip(axes, ("HR@10", "NDCG@10"), strict=True):
        values = [report["results"][v]["all"][metric] for v in VARIANTS]
        bars = axis.bar(VARIANTS, values, color=colors)
        axis.bar_label(bars, fmt="%.3f")
        axis.set_title(metric)
        axis.set_ylim(0, max(values) * 1.25)
    fig.suptitle(f"Streaming replay of {report['events_replayed']} MovieLens-100k events after the cutoff")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", "8")))
    parser.add_argument("--max-events", type=int, default=0, help="replay only the first N events (0 = all)")
    parser.add_argument("--retrain", action="store_true", help="retrain the pre-cutoff model")
    parser.add_argument("--moto", action="store_true", help="keep user state in moto's DynamoDB (slow)")
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    report = run(args)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_chart(report, args.out.with_suffix(".png"))
    print_table(report)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
