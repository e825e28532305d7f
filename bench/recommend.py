"""Recommendations API latency: the real handler in-process, the state store stubbed.

Measures p50/p99 of `lambda_handler` (Powertools routing + validation, model, ranking rules,
response serialisation, metrics and log output) for GET /v1/recommendations (k=10),
POST /v1/recommendations/rank with 100 and 500 candidates and GET /v1/interests, for a
user with a full 50-item history; and the cold init (import + model load, then the first
request) in fresh processes. Prints a table and writes bench/results/recommend.json.

Run: make bench (or PYTHONPATH=layers/core:. python bench/recommend.py)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "recommend.json"
TARGET_P99_MS = 15.0
TARGET_COLD_INIT_MS = 400.0

ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "USER_STATE_TABLE": "bench-user-state",
    "MODEL_DIR": str(REPO / "layers" / "model" / "model"),
    "ALLOWED_ORIGINS": "https://app.example.com",
    "POWERTOOLS_SERVICE_NAME": "rtrec",
    "POWERTOOLS_METRICS_NAMESPACE": "RtrecBench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}

# What Lambda sets and the libraries look at during init: with LAMBDA_TASK_ROOT the X-Ray SDK takes its
# Lambda path (no sampling client), and Tracing: Active means the Tracer is on.
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(REPO / "functions" / "recommend"),
    "AWS_LAMBDA_FUNCTION_NAME": "RecommendFunction",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
}

# Runs in a fresh interpreter: what a Lambda cold start pays before and at its first request.
COLD_SCRIPT = """
import json, sys, time
started, started_cpu = time.perf_counter(), time.process_time()
import numpy, boto3, ai_edge_litert.interpreter
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
dependencies = time.perf_counter()
from functions.recommend import app
imported, imported_cpu = time.perf_counter(), time.process_time()
from bench.recommend import _Context, request, stub_store
app.user_states = stub_store()
app.logger.registered_handler.setStream(open("/dev/null", "w"))
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    first_started = time.perf_counter()
    response = app.lambda_handler(request("GET", "/v1/recommendations", {"k": "10"}), _Context())
    first = time.perf_counter()
assert response["statusCode"] == 200, response
print(json.dumps({
    "init_ms": (imported - started) * 1000,
    "init_cpu_ms": (imported_cpu - started_cpu) * 1000,
    "dependencies_ms": (dependencies - started) * 1000,
    "module_ms": (imported - dependencies) * 1000,
    "first_request_ms": (first - first_started) * 1000,
    "degraded": json.loads(response["body"])["degraded"],
    "pydantic_imported": "pydantic" in sys.modules,
}))
"""


class _Context:
    function_name = "RecommendFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RecommendFunction"
    aws_request_id = "bench"


def request(method: str, path: str, query: dict[str, str] | None = None, body: object = None) -> dict:
    """An HTTP API v2 event after the JWT authorizer, as API Gateway sends it."""
    event = json.loads((REPO / "events" / "http-get-recommendations.json").read_text())
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event.pop("queryStringParameters", None)
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["headers"]["content-type"] = "application/json"
        event["body"] = json.dumps(body)
    return event


def stub_store():
    """A store answering every user with a 50-interaction history (no DynamoDB in the measurement)."""
    from rtrec.features import Catalog
    from rtrec.state import Interaction, UserState

    catalog = Catalog.load(os.environ["MODEL_DIR"])
    items = catalog.item_ids[100:150]
    recent = [Interaction(i, "rating", 1_795_800_000_000 + n, f"e{n}", 4.0) for n, i in enumerate(items)]
    state = UserState("bench-user", version=1, recent=recent, seen_items=list(items))

    class StubStore:
        def get(self, user_id: str, consistent: bool = True) -> UserState:
            return state

    return StubStore()


def measure(handler, event: dict, iterations: int, warmup: int = 30) -> dict:
    """Wall-clock and CPU-time percentiles: on a shared machine the wall clock includes time the
    process waited for a core; the CPU time is what one request costs on an idle core."""
    for _ in range(warmup):
        response = handler(event, _Context())
        assert response["statusCode"] == 200, response
    assert not json.loads(response["body"]).get("degraded"), "bench must measure the model path"
    wall, cpu = [], []
    for _ in range(iterations):
        started, started_cpu = time.perf_counter(), time.process_time()
        handler(event, _Context())
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)

    def percentile(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)

    return {
        "p50_ms": percentile(wall, 0.5),
        "p99_ms": percentile(wall, 0.99),
        "max_ms": round(max(wall), 3),
        "cpu_p50_ms": percentile(cpu, 0.5),
        "cpu_p99_ms": percentile(cpu, 0.99),
        "iterations": iterations,
    }


def hot_path(iterations: int) -> dict[str, dict]:
    from functions.recommend import app

    app.user_states = stub_store()
    app.logger.registered_handler.setStream(io.StringIO())
    catalog = app.recommender.catalog
    cases = {
        "GET /v1/recommendations k=10": request("GET", "/v1/recommendations", {"k": "10"}),
        "GET /v1/recommendations k=100": request("GET", "/v1/recommendations", {"k": "100"}),
        "POST /v1/recommendations/rank 100": request(
            "POST", "/v1/recommendations/rank", body={"item_ids": catalog.item_ids[200:300]}
        ),
        "POST /v1/recommendations/rank 500": request(
            "POST", "/v1/recommendations/rank", body={"item_ids": catalog.item_ids[200:700]}
        ),
        "GET /v1/interests": request("GET", "/v1/interests"),
    }
    results = {}
    for name, event in cases.items():
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):  # EMF metrics lines
            results[name] = measure(app.lambda_handler, event, iterations)
    return results


def cold_init(runs: int, runtime_dir: Path | None) -> dict:
    """Fresh interpreters in a Lambda-like environment (tracing on).

    With `runtime_dir` (pip --target of requirements/runtime.txt + boto3), `python -S` sees only what
    the Lambda layer holds, not the dev venv's extra packages that botocore picks up (awscrt, pyOpenSSL).
    """
    paths = [str(REPO / "layers" / "core"), str(REPO)]
    command = [sys.executable, "-c", COLD_SCRIPT]
    if runtime_dir is not None:
        paths.insert(0, str(runtime_dir))
        command.insert(1, "-S")
    env = {**os.environ, **ENVIRONMENT, **LAMBDA_ENVIRONMENT, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("POWERTOOLS_TRACE_DISABLED")
    samples = []
    for _ in range(runs):
        out = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True)
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not any(s["degraded"] for s in samples), "cold init must load the model"

    def median(key: str) -> float:
        return round(statistics.median(s[key] for s in samples), 1)

    return {
        "site": str(runtime_dir) if runtime_dir else "project venv",
        "init_median_ms": median("init_ms"),
        "init_max_ms": round(max(s["init_ms"] for s in samples), 1),
        "init_cpu_median_ms": median("init_cpu_ms"),
        "dependencies_median_ms": median("dependencies_ms"),
        "module_median_ms": median("module_ms"),
        "first_request_median_ms": median("first_request_ms"),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="pip --target dir of requirements/runtime.txt (+ boto3) to time cold init without the dev venv",
    )
    args = parser.parse_args()
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)

    load_before = os.getloadavg()[0]
    hot = hot_path(args.iterations)
    cold = cold_init(args.cold_runs, args.runtime_dir)
    from functions.recommend import app

    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # A shared machine: a high load average inflates the tails; compare runs at similar load.
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "model_version": app.recommender.model_version,
        "retrieval_size": app.recommender.config.retrieval_size,
        "targets": {"p99_ms": TARGET_P99_MS, "cold_init_ms": TARGET_COLD_INIT_MS},
        "handler": hot,
        "cold_init": cold,
        "meets_targets": all(r["p99_ms"] <= TARGET_P99_MS for r in hot.values())
        and cold["init_median_ms"] <= TARGET_COLD_INIT_MS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")

    print(f"target p99 ≤ {TARGET_P99_MS:g} ms; load average {report['machine']['load_average_1m']}")
    print("| route (history 50, store stubbed) | p50 ms | p99 ms | max ms | CPU p50 ms | CPU p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, r in hot.items():
        print(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} "
            f"| {r['cpu_p50_ms']:.2f} | {r['cpu_p99_ms']:.2f} |"
        )
    print(
        f"\ncold init, fresh process ({cold['site']}), median of {cold['runs']}: "
        f"{cold['init_median_ms']:.0f} ms (max {cold['init_max_ms']:.0f}; target ≤ {TARGET_COLD_INIT_MS:g}); "
        f"CPU time {cold['init_cpu_median_ms']:.0f} ms"
    )
    print(
        f"  dependency imports {cold['dependencies_median_ms']:.0f} ms + handler module "
        f"(model load, AWS client, routes) {cold['module_median_ms']:.0f} ms; "
        f"first request {cold['first_request_median_ms']:.0f} ms"
    )
    print(f"meets targets: {report['meets_targets']}  -> {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
