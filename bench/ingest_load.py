"""Where an ingest batch's time goes as the users per batch grow (loopback only, bounded).

    python bench/ingest_load.py [--batches 8] [--batch-size 100] [--users-per-batch 1,5,20,50,100]

The real `rtrec.ingest.BatchIngestor` writes through a real boto3 DynamoDB client to a moto server on
127.0.0.1 (nothing leaves the machine; every run is a fixed number of batches). Each batch holds
`--batch-size` events spread over N users; the table starts empty and every user is new, so each
batch reads N states (one BatchGetItem) and writes N items. Store calls and the fold are timed by
wrapping them; "wall" is the batch as the handler sees it. Prints a table, writes
bench/results/ingest_load.json. moto is far slower per call than DynamoDB: read the split, not the
absolute milliseconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

import rtrec.ingest as ingest_module  # noqa: E402
from rtrec.events import Event  # noqa: E402
from rtrec.ingest import BatchIngestor, IngestPolicy, kinesis_records  # noqa: E402
from rtrec.stores.clients import ClientTimeouts, aws_client  # noqa: E402
from rtrec.stores.user_state import UserStateStore  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "ingest_load.json"
NOW_MS = 1_800_000_000_000


class Timed:
    """Sums the seconds spent in the wrapped callables (thread safe: writers run concurrently)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def wrap(self, name: str, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed


def records(batch: int, size: int, users: int) -> list[dict[str, Any]]:
    events = [
        Event(f"b{batch}-u{n % users}", f"b{batch}-e{n}", str(1 + n % 1000), "view", NOW_MS - 60_000 + n)
        for n in range(size)
    ]
    return [
        {
            "kinesis": {
                "partitionKey": e.user_id,
                "sequenceNumber": str(batch * size + n),
                "data": base64.b64encode(e.to_bytes()).decode(),
            },
            "eventID": f"shardId-000000000000:{batch * size + n}",
        }
        for n, e in enumerate(events)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--users-per-batch", default="1,5,20,50,100")
    args = parser.parse_args()
    # moto answers any credentials; nothing here reaches AWS.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        dynamodb = aws_client(
            "dynamodb", ClientTimeouts(2, 10, 3), endpoint_url=endpoint, region_name="us-east-1"
        )
        rows = []
        for users in [int(u) for u in args.users_per_batch.split(",")]:
            table = f"load-{users}"
            boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1").create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            timed = Timed()
            store = UserStateStore.from_client(dynamodb, table)
            store.get_many = timed.wrap("read (BatchGetItem)", store.get_many)  # type: ignore[method-assign]
            store.put = timed.wrap("write (PutItem)", store.put)  # type: ignore[method-assign]
            ingestor = BatchIngestor(store, None, None, IngestPolicy(), clock_ms=lambda: NOW_MS)  # type: ignore[arg-type]
            real_fold = ingest_module.fold
            ingest_module.fold = timed.wrap("fold", real_fold)  # type: ignore[assignment]
            walls = []
            try:
                for batch in range(args.batches):
                    prepared = kinesis_records({"Records": records(batch, args.batch_size, users)})
                    started = time.perf_counter()
                    outcome = ingestor.process(prepared)
                    walls.append((time.perf_counter() - started) * 1000)
                    assert not outcome.failures, outcome.failures
            finally:
                ingest_module.fold = real_fold
            per_batch = {name: seconds * 1000 / args.batches for name, seconds in timed.seconds.items()}
            rows.append(
                {
                    "users_per_batch": users,
                    "wall_ms_median": round(statistics.median(walls), 1),
                    **{f"{name}_ms": round(ms, 1) for name, ms in sorted(per_batch.items())},
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()

    names = sorted({k for row in rows for k in row if k != "users_per_batch"})
    print("\n| users per batch | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for row in rows:
        print(f"| {row['users_per_batch']} | " + " | ".join(str(row.get(n, "")) for n in names) + " |")
    print("\n(read, fold and write are summed over the writer threads; wall is one batch end to end)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"batch_size": args.batch_size, "batches": args.batches, "rows": rows}, indent=2)
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
