"""Recommendations API latency: the real handler in-process, the state store stubbed.

Measures p50/p99 of `lambda_handler` (Powertools routing + validation, model, ranking rules,
response serialisation, metrics and log output) for GET /v1/recommendations (k=10),
POST /v1/recommendations/rank with 100 and 500 candidates and GET /v1/interests, for a
user with a full 50-item history; and the cold init (import + model load, then the first
request) in fresh processes. Prints a table and writes bench/results/recommend.json.

With --lambda-like both run as Lambda runs the function instead: python3.12, and on sys.path only the
function and the layers as `sam build` wrote them (both layers merged into one read-only `opt/python`,
the model at `opt/model`) plus boto3/botocore, which the Lambda runtime provides; nothing writes
bytecode, as on Lambda's read-only /opt; the function's environment is the template's, resolved against
its resources deployed in a local moto server (--cold-only: only the cold init, written to
bench/results/recommend-lambda-like.json).

Run: make bench, or after make build: PYTHONPATH=layers/core:. python bench/recommend.py --lambda-like
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "recommend.json"
LAMBDA_LIKE_RESULTS = REPO / "bench" / "results" / "recommend-lambda-like.json"
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
    # The bench replays one user thousands of times a second: the per-user limit would answer 429.
    "PER_USER_REQUEST_RATE": "0",
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
    import numpy as np

    from rtrec.features import Catalog
    from rtrec.state import Interaction, UserState, item_key

    catalog = Catalog.load(os.environ["MODEL_DIR"])
    items = catalog.item_ids[100:150]
    recent = [Interaction(i, "rating", 1_795_800_000_000 + n, f"e{n}", 4.0) for n, i in enumerate(items)]
    seen = np.array([item_key(i) for i in items], dtype="<u4")
    state = UserState("bench-user", version=1, recent=recent, seen=seen)

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


def hot_path(iterations: int, app=None) -> dict[str, dict]:
    if app is None:
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


# Runs as Lambda's bootstrap would: `-I -S -B` (no site, no environment-driven path, no bytecode
# writes), sys.path set like the python3.12 runtime's (task root, /opt/python, stdlib, the runtime's
# boto3), then the handler module imported by name. The bench helpers load only after the timed part.
LAMBDA_LIKE_SCRIPT = """
import sys, time
started_wall, started, started_cpu = time.time(), time.perf_counter(), time.process_time()
task, opt_python, boto, repo = sys.argv[1:5]
sys.path[:0] = [task, opt_python]
sys.path.append(boto)
import app
imported, imported_cpu = time.perf_counter(), time.process_time()
import contextlib, io, json
sys.path.append(repo)
from bench.recommend import _Context, request, stub_store
app.user_states = stub_store()
app.logger.registered_handler.setStream(open("/dev/null", "w"))
with contextlib.redirect_stdout(io.StringIO()):
    first_started = time.perf_counter()
    response = app.lambda_handler(request("GET", "/v1/recommendations", {"k": "10"}), _Context())
    first = time.perf_counter()
assert response["statusCode"] == 200, response
origins = {name: getattr(sys.modules.get(name), "__file__", None) or "" for name in
           ("numpy", "ai_edge_litert", "aws_lambda_powertools", "rtrec", "boto3", "botocore")}
print(json.dumps({
    "started_wall": started_wall,
    "init_ms": (imported - started) * 1000,
    "init_cpu_ms": (imported_cpu - started_cpu) * 1000,
    "first_request_ms": (first - first_started) * 1000,
    "degraded": json.loads(response["body"])["degraded"],
    "python": sys.version.split()[0],
    "numpy": sys.modules["numpy"].__version__,
    "origins": origins,
    "modules": len(sys.modules),
    "registry": getattr(app, "model_updates", None) is not None,
}))
"""

# The handler latencies on the same site, in one python3.12 process (after its own cold start).
LAMBDA_LIKE_HOT_SCRIPT = """
import json, sys
task, opt_python, boto, repo, iterations = sys.argv[1:6]
sys.path[:0] = [task, opt_python]
sys.path.append(boto)
import app
sys.path.append(repo)
from bench.recommend import hot_path
print(json.dumps(hot_path(int(iterations), app)))
"""


def find_python312() -> str | None:
    """python3.12 as the Makefile finds it: $PYTHON312, then PATH (if it really runs 3.12), then pyenv."""
    candidates = [os.environ.get("PYTHON312") or "", "python3.12"]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:
            continue
        if out.stdout.strip() == "True":
            return candidate
    return None


def lambda_like_site(build_dir: Path, root: Path, bytecode: bool) -> dict[str, Path]:
    """A read-only copy of what Lambda mounts: /var/task, /opt/python (both layers merged), /opt/model."""
    layers = [build_dir / "DependencyLayer" / "python", build_dir / "CoreLayer" / "python"]
    task = build_dir / "RecommendFunction"
    # ModelLayer has no build method: sam build leaves it out and sam deploy zips layers/model as is.
    model = build_dir / "ModelLayer" / "model"
    if not model.is_dir():
        model = REPO / "layers" / "model" / "model"
    for path in [*layers, task / "app.py", model]:
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `make build` first")
    site = {"task": root / "task", "opt_python": root / "opt" / "python", "model": root / "opt" / "model"}
    shutil.copytree(task, site["task"])
    for layer in layers:
        shutil.copytree(layer, site["opt_python"], dirs_exist_ok=True)
    shutil.copytree(model, site["model"])
    if not bytecode:
        for cache in list(root.rglob("__pycache__")):
            shutil.rmtree(cache)
    # Read-only as /opt and /var/task are (this does not stop root; -B and the count below do).
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return site


def count_bytecode(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.pyc"))


@contextlib.contextmanager
def deployed_environment(function_id: str = "RecommendFunction"):
    """The function's environment exactly as template.yaml sets it, resolved against the template's
    resources created in a local moto server (infra.local.aws.deploy, as `make local` does): the user
    state and catalog tables, the model bucket and its pointer ("bootstrap": the layer's model). So the
    init reads the settings Lambda gives it, and the first request pays what it pays there (the lazy
    registry and catalog clients, their first calls), against moto instead of AWS."""
    import logging

    import boto3

    from infra.local.aws import MotoServer, deploy
    from infra.local.template import Template

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call otherwise
    for name, value in ENVIRONMENT.items():  # samtranslator needs a region from the environment
        os.environ.setdefault(name, value)
    server = MotoServer()
    endpoint = server.start()
    try:
        session = boto3.session.Session(
            region_name=ENVIRONMENT["AWS_DEFAULT_REGION"],
            aws_access_key_id=ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        )
        deployment = deploy(Template(REPO / "template.yaml"), session, endpoint)
        yield {**deployment.functions[function_id].environment, "AWS_ENDPOINT_URL": endpoint}
    finally:
        server.stop()


@contextlib.contextmanager
def read_only_site(build_dir: Path, boto_dir: Path, bytecode: bool = True):
    """A temporary Lambda-like copy of the built site; fails if anything wrote bytecode into it."""
    if not (boto_dir / "boto3").is_dir():
        raise SystemExit(f"{boto_dir} has no boto3: `make bench` installs it from requirements/runtime.lock")
    root = Path(tempfile.mkdtemp(prefix="rtrec-lambda-like-"))
    try:
        site = lambda_like_site(build_dir, root, bytecode)
        site["root"], site["boto"], site["pyc_files"] = root, boto_dir, count_bytecode(root)
        yield site
        written = count_bytecode(root) - site["pyc_files"]
        assert written == 0, f"{written} .pyc files were written: the measurement was not read-only"
    finally:
        for path in root.rglob("*"):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(root)


def run_in_site(python: str, site: dict, script: str, *args: str) -> dict:
    """One fresh python3.12 process on the site, in Lambda's environment; its last stdout line as JSON."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        **ENVIRONMENT,
        **LAMBDA_ENVIRONMENT,
        "LAMBDA_TASK_ROOT": str(site["task"]),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        **site.get("environment", {}),
        # The layer's model as /opt/model holds it; one user replayed thousands of times a second.
        "MODEL_DIR": str(site["model"]),
        "PER_USER_REQUEST_RATE": "0",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    command = [
        python, "-I", "-S", "-B", "-c", script,
        str(site["task"]), str(site["opt_python"]), str(site["boto"]), str(REPO), *args,
    ]  # fmt: skip
    spawned = time.time()
    out = subprocess.run(command, env=env, cwd=site["task"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"lambda-like run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "started_wall" in result:
        result["interpreter_start_ms"] = (result["started_wall"] - spawned) * 1000
    return result


def lambda_like_cold_init(runs: int, python: str, site: dict, build_dir: Path) -> dict:
    """Median over fresh python3.12 processes of the handler module's import (the init Lambda bills and
    the caller waits for) and of the first request."""
    samples = [run_in_site(python, site, LAMBDA_LIKE_SCRIPT) for _ in range(runs)]
    assert not any(s["degraded"] for s in samples), "cold init must load the model"
    for module, origin in samples[0]["origins"].items():
        expected = site["boto"] if module in ("boto3", "botocore") else site["root"]
        assert origin.startswith(str(expected)), f"{module} came from {origin}, not the Lambda-like site"
    bytecode = site["pyc_files"] > 0

    def median(key: str) -> float:
        return round(statistics.median(s[key] for s in samples), 1)

    return {
        "site": f"{build_dir.relative_to(REPO) if build_dir.is_relative_to(REPO) else build_dir} "
        f"({'with' if bytecode else 'without'} layer bytecode) + {site['boto'].name}",
        "bytecode": bytecode,
        "layer_pyc_files": site["pyc_files"],
        "python": samples[0]["python"],
        "numpy": samples[0]["numpy"],
        "modules_loaded": samples[0]["modules"],
        "model_registry": samples[0]["registry"],
        "init_median_ms": median("init_ms"),
        "init_min_ms": round(min(s["init_ms"] for s in samples), 1),
        "init_max_ms": round(max(s["init_ms"] for s in samples), 1),
        "init_cpu_median_ms": median("init_cpu_ms"),
        "interpreter_start_median_ms": median("interpreter_start_ms"),
        "first_request_median_ms": median("first_request_ms"),
        "runs": runs,
        "samples_init_ms": [round(s["init_ms"], 1) for s in samples],
    }


def print_cold(cold: dict) -> None:
    if "python" in cold:  # --lambda-like
        print(
            f"\ncold init as Lambda starts it (python {cold['python']}, numpy {cold['numpy']}, "
            "read-only site, tracing on), fresh processes:"
        )
        print("| site | runs | init median ms | min | max | init CPU ms | first request ms |")
        print("|---|---|---|---|---|---|---|")
        for v in [cold, *cold.get("compared", [])]:
            print(
                f"| {v['site']} | {v['runs']} | {v['init_median_ms']:.0f} | {v['init_min_ms']:.0f} "
                f"| {v['init_max_ms']:.0f} | {v['init_cpu_median_ms']:.0f} "
                f"| {v['first_request_median_ms']:.1f} |"
            )
        print(f"target: init median ≤ {TARGET_COLD_INIT_MS:g} ms")
        return
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="pip --target dir of requirements/runtime.txt (+ boto3) to time cold init without the dev venv",
    )
    parser.add_argument(
        "--lambda-like",
        action="store_true",
        help="time the cold init as Lambda starts it: python3.12, the `sam build` layers (read-only), boto3",
    )
    parser.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    parser.add_argument(
        "--boto-dir",
        type=Path,
        default=REPO / ".cache" / "lambda-boto3",
        help="pip --target dir of boto3/botocore and their dependencies (what the Lambda runtime provides)",
    )
    parser.add_argument("--python", help="python3.12 for --lambda-like (default: $PYTHON312, PATH, pyenv)")
    parser.add_argument(
        "--compare-without-bytecode",
        action="store_true",
        help="--lambda-like: also time the same site with the layers' __pycache__ removed",
    )
    parser.add_argument("--cold-only", action="store_true", help="skip the in-process handler latencies")
    args = parser.parse_args()
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)

    load_before = os.getloadavg()[0]
    if args.lambda_like:
        python = args.python or find_python312()
        if not python:
            raise SystemExit("--lambda-like needs python3.12 (Lambda's interpreter): --python or $PYTHON312")
        with deployed_environment() as environment:
            with read_only_site(args.build_dir, args.boto_dir) as site:
                site["environment"] = environment
                hot = (
                    {}
                    if args.cold_only
                    else run_in_site(python, site, LAMBDA_LIKE_HOT_SCRIPT, str(args.iterations))
                )
                cold = lambda_like_cold_init(args.cold_runs, python, site, args.build_dir)
            if args.compare_without_bytecode:
                with read_only_site(args.build_dir, args.boto_dir, bytecode=False) as site:
                    site["environment"] = environment
                    cold["compared"] = [lambda_like_cold_init(args.cold_runs, python, site, args.build_dir)]
    else:
        hot = {} if args.cold_only else hot_path(args.iterations)
        cold = cold_init(args.cold_runs, args.runtime_dir)
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # A shared machine: a high load average inflates the tails; compare runs at similar load.
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "targets": {"p99_ms": TARGET_P99_MS, "cold_init_ms": TARGET_COLD_INIT_MS},
        "handler": hot,
        "cold_init": cold,
        "meets_targets": all(r["p99_ms"] <= TARGET_P99_MS for r in hot.values())
        and cold["init_median_ms"] <= TARGET_COLD_INIT_MS,
    }
    if hot and not args.lambda_like:
        from functions.recommend import app

        report["model_version"] = app.recommender.model_version
        report["retrieval_size"] = app.recommender.config.retrieval_size
    report["handler_site"] = (
        f"python {cold['python']} on the --lambda-like site" if args.lambda_like else "this process"
    )
    results = LAMBDA_LIKE_RESULTS if args.cold_only and args.lambda_like else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")

    print(f"load average {report['machine']['load_average_1m']}")
    if hot:
        print(f"handler in {report['handler_site']}; target p99 ≤ {TARGET_P99_MS:g} ms")
        print("| route (history 50, store stubbed) | p50 ms | p99 ms | max ms | CPU p50 ms | CPU p99 ms |")
        print("|---|---|---|---|---|---|")
        for name, r in hot.items():
            print(
                f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} "
                f"| {r['cpu_p50_ms']:.2f} | {r['cpu_p99_ms']:.2f} |"
            )
    print_cold(cold)
    print(f"meets targets: {report['meets_targets']}  -> {results.relative_to(REPO)}")


if __name__ == "__main__":
    main()
