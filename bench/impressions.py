"""What recording an impression costs the request: a log line vs a put to Firehose or Kinesis.

    python bench/impressions.py [--requests 2000] [--items 10]

Each way records the same impression (`rtrec.impressions.impression_record` of a k-item answer):

- ``log line``: the recommend function's way: Powertools ``logger.info("impression", extra=...)`` (the
  JSON line goes to stdout, here /dev/null; in Lambda the runtime ships stdout to CloudWatch Logs
  outside the request, and a subscription filter takes it to the archive);
- ``firehose put (sync)`` / ``kinesis put (sync)``: ``PutRecord`` with boto3 on the request path,
  against a moto server on 127.0.0.1: a lower bound on the real call (no TLS, no network, no AWS
  service time; in-region calls add milliseconds);
- ``queue for a background put``: the request only appends to an in-memory queue a thread drains
  with PutRecordBatch. Lambda freezes the container when the handler returns, so in a function the
  drain must happen before returning (or in an extension): the put's cost comes back to the invocation.

Prints p50/p99 per request in microseconds and writes bench/results/impressions.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "impressions.json"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e6

    return {
        "p50_us": round(at(0.5), 1),
        "p90_us": round(at(0.9), 1),
        "p99_us": round(at(0.99), 1),
        "mean_us": round(sum(ordered) / len(ordered) * 1e6, 1),
    }


def timed(call: Callable[[int], None], requests: int, warmup: int = 50) -> dict[str, float]:
    for n in range(warmup):
        call(n)
    gc.collect()
    gc.freeze()  # as the recommend function does after init: the setup's objects are not re-scanned
    samples, cpu = [], []
    for n in range(requests):
        started, started_cpu = time.perf_counter(), time.thread_time()
        call(n)
        samples.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    # Wall time is what a request waits; on a loaded machine a preemption lands in it. The thread's
    # CPU time leaves preemptions (and network waits) out: the work itself.
    return {**percentiles(samples), **{f"cpu_{k}": v for k, v in percentiles(cpu).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--items", type=int, default=10, help="items in the answer (k)")
    args = parser.parse_args()

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3
    from aws_lambda_powertools import Logger
    from moto.server import ThreadedMotoServer

    from rtrec.impressions import impression_record

    items = [(f"item-{n}", "model") for n in range(args.items)]

    def record(n: int) -> dict:
        return impression_record(f"{n:032x}", "user-1", "GET /v1/recommendations", "v1", items,
                                 int(time.time() * 1000), "model", experiment="exp", source="model",
                                 latency_ms=12.5)  # fmt: skip

    results: dict[str, dict[str, float]] = {}
    with open(os.devnull, "w") as sink:
        logger = Logger(service="bench-impressions", logger_handler=logging.StreamHandler(sink))
        results["log line (Powertools, the shipped way)"] = timed(
            lambda n: logger.info("impression", extra=record(n)), args.requests
        )

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        firehose = boto3.client("firehose", endpoint_url=endpoint)
        kinesis = boto3.client("kinesis", endpoint_url=endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bench-impressions")
        firehose.create_delivery_stream(
            DeliveryStreamName="bench-impressions",
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/bench",
                "BucketARN": "arn:aws:s3:::bench-impressions",
            },
        )
        kinesis.create_stream(StreamName="bench-impressions", ShardCount=1)

        def put_firehose(n: int) -> None:
            data = json.dumps(record(n), separators=(",", ":")).encode() + b"\n"
            firehose.put_record(DeliveryStreamName="bench-impressions", Record={"Data": data})

        def put_kinesis(n: int) -> None:
            data = json.dumps(record(n), separators=(",", ":")).encode()
            kinesis.put_record(StreamName="bench-impressions", Data=data, PartitionKey="user-1")

        requests = min(args.requests, 500)  # each is a local HTTP round trip
        results["firehose put (sync, moto on localhost)"] = timed(put_firehose, requests)
        results["kinesis put (sync, moto on localhost)"] = timed(put_kinesis, requests)

        pending: queue.Queue[bytes | None] = queue.Queue()

        def drain() -> None:
            batch: list[dict] = []
            while True:
                data = pending.get()
                if data is not None:
                    batch.append({"Data": data})
                if batch and (data is None or len(batch) >= 100 or pending.empty()):
                    firehose.put_record_batch(DeliveryStreamName="bench-impressions", Records=batch)
                    batch = []
                if data is None:
                    return

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        results["queue for a background put (enqueue only)"] = timed(
            lambda n: pending.put(json.dumps(record(n), separators=(",", ":")).encode() + b"\n"),
            args.requests,
        )
        pending.put(None)
        drainer.join(timeout=60)
    finally:
        server.stop()

    width = max(len(name) for name in results)
    keys = ("p50_us", "p90_us", "p99_us", "cpu_p50_us", "cpu_p99_us")
    print(
        f"{'way':<{width}}  " + "  ".join(f"{k:>10}" for k in keys) + f"  (k = {args.items}, {args.requests})"
    )
    for name, numbers in results.items():
        cells = "  ".join(f"{numbers[key]:>10.1f}" for key in keys)
        print(f"{name:<{width}}  {cells}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "items": args.items,
                "requests": args.requests,
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "load_average": os.getloadavg(),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
