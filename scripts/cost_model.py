"""Cost and capacity model: rtrec on AWS for a number of monthly active users, next to Amazon Personalize.

Prints a markdown table (the one in docs/COST.md) and, with --json, writes the numbers. Every assumption is a
flag; prices are constants below with the date they were taken. Method: docs/COST.md.

    python scripts/cost_model.py [--mau 10000 1000000 10000000] [--json bench/results/cost.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOURS = 730.0  # hours in an average month
SECONDS = HOURS * 3600

# Prices: us-east-1, USD, list prices as assumed on 2026-11-30 (not checked against the live price pages
# from this machine; see docs/COST.md). Free tiers are ignored.
PRICES = {
    "lambda_request_per_m": 0.20,
    "lambda_gb_second": 0.0000166667,  # x86_64
    "http_api_per_m": 1.00,  # first 300M requests a month
    "http_api_per_m_above_300m": 0.90,
    "kinesis_shard_hour": 0.015,  # provisioned mode (the template's ShardCount)
    "kinesis_put_unit_per_m": 0.014,  # one PUT payload unit per record up to 25 KB
    "dynamodb_wru_per_m": 0.625,  # on-demand, after the Nov 2024 price cut
    "dynamodb_rru_per_m": 0.125,
    "dynamodb_gb_month": 0.25,
    "logs_ingest_gb": 0.50,
    "logs_store_gb_month": 0.03,
    "xray_trace_per_m": 5.00,
    "custom_metric_month": 0.30,
    "cognito_essentials_mau": 0.015,  # above 10,000 MAU (optional: only with the stack's own user pool)
    "personalize_tps_hour_tiers": [(20_000, 0.20), (180_000, 0.10), (math.inf, 0.05)],
    "personalize_ingest_gb": 0.05,
    "personalize_training_hour": 0.24,
}


@dataclass
class Load:
    daily_active: float = 0.30
    events_per_active_day: float = 20
    requests_per_active_day: float = 5
    events_per_post: float = 4  # events a client sends per POST /v1/events
    peak_to_mean: float = 3.0  # busiest hour over the month's mean
    event_bytes: int = 500  # one Kinesis record (JSON event + envelope)
    state_kb: float = 4.0  # typical UserState item (docs/ARCHITECTURE.md "User state": a few KB)
    # billed durations (ms) and memory (MB) per invocation
    recommend_ms: float = (
        8.0  # handler p50 1.3 ms as shipped (docs, bench/recommend.py) + GetItem ≈ 5 ms + rounding
    )
    recommend_mb: int = 1024
    collect_ms: float = 12.0  # validation ≈ 1 ms + Kinesis PutRecords ≈ 10 ms
    collect_mb: int = 256
    ingest_batch_fixed_ms: float = 12.0  # one BatchGetItem + overhead per batch
    ingest_per_user_ms: float = 0.7  # 5 ms conditional PutItem over 8 writer threads (README ingest bench)
    ingest_per_event_ms: float = 0.17  # handler CPU per event (≈ 6,000 events/s, README ingest bench)
    ingest_mb: int = 512
    cold_init_s: float = 0.4  # billed init per cold start (README: ≈ 240–390 ms)
    environment_life_h: float = 1.0  # assumed: each warm environment is replaced about once an hour
    log_bytes_api: int = 1200  # per API request: platform START/END/REPORT + one Powertools line + access log
    log_bytes_batch: int = 700  # per ingest batch
    xray_share: float = 0.05  # default sampling: 1 request/s reservoir + 5 %
    metrics: int = 12  # custom metric series (EMF)
    personalize_min_tps: float = 1.0
    personalize_training_hours_per_week: float = 4.0  # assumed; depends on data and recipe


def http_api(requests: float) -> float:
    first = min(requests, 300e6)
    return (
        first / 1e6 * PRICES["http_api_per_m"]
        + max(0.0, requests - 300e6) / 1e6 * PRICES["http_api_per_m_above_300m"]
    )


def tps_hours_cost(tps_hours: float) -> float:
    cost, left = 0.0, tps_hours
    for size, price in PRICES["personalize_tps_hour_tiers"]:
        used = min(left, size)
        cost += used * price
        left -= used
        if left <= 0:
            break
    return cost


def lambda_cost(invocations: float, ms: float, mb: int) -> tuple[float, float]:
    gb_s = invocations * ms / 1000 * mb / 1024
    return invocations / 1e6 * PRICES["lambda_request_per_m"] + gb_s * PRICES["lambda_gb_second"], gb_s


def model(mau: int, load: Load) -> dict[str, float]:
    dau = mau * load.daily_active
    days = HOURS / 24
    events = dau * load.events_per_active_day * days
    requests = dau * load.requests_per_active_day * days
    posts = events / load.events_per_post
    api_requests = requests + posts
    peak = load.peak_to_mean / SECONDS  # per-second rate at the busiest hour, per monthly unit
    peak_events, peak_requests, peak_posts = events * peak, requests * peak, posts * peak

    # Kinesis: 1,000 records/s and 1 MB/s in per shard, provisioned for the peak with 25 % headroom
    shards = max(1, math.ceil(1.25 * max(peak_events / 1000, peak_events * load.event_bytes / 1e6)))
    kinesis = shards * HOURS * PRICES["kinesis_shard_hour"] + events / 1e6 * PRICES["kinesis_put_unit_per_m"]

    # Ingest: lanes = shards × ParallelizationFactor 4; a 1 s window or 100 records closes a batch
    lanes = shards * 4
    mean_events_s = events / SECONDS
    batch_size = max(1.0, min(100.0, mean_events_s / lanes))
    batches = events / batch_size
    users_per_batch = batch_size / load.events_per_post  # one POST's events share a partition key and a batch
    batch_ms = (
        load.ingest_batch_fixed_ms
        + users_per_batch * load.ingest_per_user_ms
        + batch_size * load.ingest_per_event_ms
    )
    ingest_cost, ingest_gbs = lambda_cost(batches, batch_ms, load.ingest_mb)

    recommend_cost, recommend_gbs = lambda_cost(requests, load.recommend_ms, load.recommend_mb)
    collect_cost, collect_gbs = lambda_cost(posts, load.collect_ms, load.collect_mb)
    concurrency = {
        "recommend": peak_requests * load.recommend_ms / 1000,
        "collect": peak_posts * load.collect_ms / 1000,
        "ingest": float(lanes),
    }
    # cold starts: every environment alive at the peak is replaced about once per environment_life_h
    inits = sum(max(1.0, math.ceil(c)) for c in concurrency.values()) * HOURS / load.environment_life_h
    mean_mb = (load.recommend_mb + load.collect_mb + load.ingest_mb) / 3
    init_cost = inits * load.cold_init_s * mean_mb / 1024 * PRICES["lambda_gb_second"]
    lambda_total = recommend_cost + collect_cost + ingest_cost + init_cost

    # DynamoDB on-demand: one strongly consistent read per recommendation; per ingest batch one read and one
    # conditional write per user (a read unit per 4 KB, a write unit per 1 KB)
    rru_per_item = math.ceil(load.state_kb / 4)
    wru_per_item = math.ceil(load.state_kb)
    user_writes = batches * users_per_batch
    rru = requests * rru_per_item + user_writes * rru_per_item
    wru = user_writes * wru_per_item
    storage_gb = mau * load.state_kb / 1e6
    dynamodb = (
        rru / 1e6 * PRICES["dynamodb_rru_per_m"]
        + wru / 1e6 * PRICES["dynamodb_wru_per_m"]
        + storage_gb * PRICES["dynamodb_gb_month"]
    )

    api = http_api(api_requests)
    log_gb = (api_requests * load.log_bytes_api + batches * load.log_bytes_batch) / 1e9
    logs = log_gb * PRICES["logs_ingest_gb"] + log_gb * PRICES["logs_store_gb_month"]
    traces = min(api_requests, SECONDS + load.xray_share * max(0.0, api_requests - SECONDS))
    xray = traces / 1e6 * PRICES["xray_trace_per_m"]
    metrics = load.metrics * PRICES["custom_metric_month"]
    total = kinesis + lambda_total + dynamodb + api + logs + xray + metrics
    serving = (
        recommend_cost
        + requests / 1e6 * PRICES["http_api_per_m"]
        + requests * rru_per_item / 1e6 * PRICES["dynamodb_rru_per_m"]
    )

    # Personalize for the same load: provisioned minimum TPS, billed per hour at max(min, used);
    # with traffic above the minimum most hours, TPS-hours ≈ mean TPS × hours
    mean_tps = requests / SECONDS
    tps_hours = HOURS * max(load.personalize_min_tps, mean_tps)
    personalize_inference = tps_hours_cost(tps_hours)
    personalize_ingest = events * load.event_bytes / 1e9 * PRICES["personalize_ingest_gb"]
    personalize_training = (
        load.personalize_training_hours_per_week * (HOURS / 168) * PRICES["personalize_training_hour"]
    )
    personalize = personalize_inference + personalize_ingest + personalize_training
    cognito = max(0.0, mau - 10_000) * PRICES["cognito_essentials_mau"]
    return {
        "mau": mau,
        "events_month": events,
        "recommendations_month": requests,
        "api_requests_month": api_requests,
        "peak_events_s": peak_events,
        "peak_recommendations_s": peak_requests,
        "kinesis_shards": shards,
        "ingest_batch_size": batch_size,
        "ingest_batches_month": batches,
        "concurrency_recommend": concurrency["recommend"],
        "concurrency_collect": concurrency["collect"],
        "concurrency_ingest_max": concurrency["ingest"],
        "lambda_gb_seconds": recommend_gbs + collect_gbs + ingest_gbs,
        "cold_inits_month": inits,
        "dynamodb_rru_month": rru,
        "dynamodb_wru_month": wru,
        "dynamodb_storage_gb": storage_gb,
        "logs_gb_month": log_gb,
        "cost_kinesis": kinesis,
        "cost_lambda": lambda_total,
        "cost_dynamodb": dynamodb,
        "cost_http_api": api,
        "cost_logs": logs,
        "cost_xray": xray,
        "cost_metrics": metrics,
        "cost_total": total,
        "cost_per_m_recommendations": total / requests * 1e6,
        "serving_per_m_recommendations": serving / requests * 1e6,
        "cognito_optional": cognito,
        "personalize_tps_hours": tps_hours,
        "personalize_inference": personalize_inference,
        "personalize_ingest": personalize_ingest,
        "personalize_training": personalize_training,
        "personalize_total": personalize,
        "personalize_per_m_recommendations": personalize / requests * 1e6,
    }


ROWS = [
    ("events / month", "events_month", "{:,.0f}"),
    ("recommendation requests / month", "recommendations_month", "{:,.0f}"),
    ("API requests / month (recommendations + event POSTs)", "api_requests_month", "{:,.0f}"),
    ("peak events/s · recommendations/s", ("peak_events_s", "peak_recommendations_s"), "{:,.0f} · {:,.0f}"),
    ("Kinesis shards (peak + 25 %)", "kinesis_shards", "{:,.0f}"),
    (
        "ingest batch size (mean) · batches / month",
        ("ingest_batch_size", "ingest_batches_month"),
        "{:,.1f} · {:,.0f}",
    ),
    (
        "Lambda concurrency at peak: recommend · collect · ingest (max)",
        ("concurrency_recommend", "concurrency_collect", "concurrency_ingest_max"),
        "{:,.1f} · {:,.1f} · {:,.0f}",
    ),
    ("Lambda GB-seconds / month (without init)", "lambda_gb_seconds", "{:,.0f}"),
    (
        "DynamoDB read · write units / month",
        ("dynamodb_rru_month", "dynamodb_wru_month"),
        "{:,.0f} · {:,.0f}",
    ),
    ("DynamoDB storage GB", "dynamodb_storage_gb", "{:,.2f}"),
    ("CloudWatch Logs GB / month", "logs_gb_month", "{:,.1f}"),
    ("**Kinesis** $", "cost_kinesis", "{:,.2f}"),
    ("**Lambda** $ (3 functions + billed inits)", "cost_lambda", "{:,.2f}"),
    ("**DynamoDB** $", "cost_dynamodb", "{:,.2f}"),
    ("**API Gateway HTTP API** $", "cost_http_api", "{:,.2f}"),
    ("**CloudWatch Logs** $", "cost_logs", "{:,.2f}"),
    ("**X-Ray** $ (tracing on)", "cost_xray", "{:,.2f}"),
    ("**custom metrics** $", "cost_metrics", "{:,.2f}"),
    ("**rtrec total $ / month**", "cost_total", "**{:,.0f}**"),
    (
        "rtrec $ per 1M recommendation requests (everything, events included)",
        "cost_per_m_recommendations",
        "{:,.2f}",
    ),
    (
        "rtrec $ per 1M recommendation requests (serving path only)",
        "serving_per_m_recommendations",
        "{:,.2f}",
    ),
    ("Cognito Essentials $ (optional: only with the stack's own pool)", "cognito_optional", "{:,.0f}"),
    ("Personalize TPS-hours (min 1 TPS)", "personalize_tps_hours", "{:,.0f}"),
    ("Personalize inference $", "personalize_inference", "{:,.2f}"),
    ("Personalize event ingestion $", "personalize_ingest", "{:,.2f}"),
    ("Personalize training $ (assumed 4 h/week)", "personalize_training", "{:,.2f}"),
    ("**Personalize total $ / month**", "personalize_total", "**{:,.0f}**"),
    ("Personalize $ per 1M recommendation requests", "personalize_per_m_recommendations", "{:,.2f}"),
]


def table(results: list[dict[str, float]]) -> str:
    lines = ["| | " + " | ".join(f"{r['mau']:,.0f} MAU" for r in results) + " |"]
    lines.append("|---|" + "---|" * len(results))
    for label, key, fmt in ROWS:
        keys = key if isinstance(key, tuple) else (key,)
        cells = [fmt.format(*(r[k] for k in keys)) for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mau", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    defaults = Load()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    load = Load(**{name: getattr(args, name) for name in asdict(defaults)})
    results = [model(mau, load) for mau in args.mau]
    print(
        f"{load.daily_active:.0%} daily active; per active day {load.events_per_active_day:g} events "
        f"({load.events_per_post:g} per POST) and {load.requests_per_active_day:g} recommendation requests; "
        f"peak hour {load.peak_to_mean:g}× the mean; state item {load.state_kb:g} KB; prices as of 2026-11-30"
    )
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"load": asdict(load), "prices": PRICES, "results": results}, indent=1, default=str)
        )


if __name__ == "__main__":
    main()
