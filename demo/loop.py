"""`make demo-loop`: the learning loop on one machine, no AWS: traffic, archive, retrain, hot swap, rollback.

1. Starts the local stack (moto + the real handlers from template.yaml, with the model registry the
   functions follow: bucket + pointer, `infra/local/registry.py`). It serves the layer's MovieLens model.
2. A small generated shop (`dataio.synthetic`) sends its first days of traffic through POST /v1/events;
   the stream poller archives every record (`.cache/demo-loop/archive`, the Firehose layout), and the
   shop's catalog export is put where the template's Glue table expects it (`catalog/items/`).
3. Runs `python -m model_build.retrain` (the entry point of `make retrain` and of the scheduled job; a
   short run) on the archive: candidate vs serving model on the held-out slice, the gate, publish.
4. The running stack answers with the new version within the pointer's max age (1 s here; the template
   says 60 s), without a restart: every answer names `model_version`.
5. The shop's last days of traffic arrive, retrain again: this time the gate compares with the version
   now serving, and publishes or refuses.
6. Rolls back (`scripts/rollback_model.py`, what `make rollback` runs) and the answers name the old
   version again.

python -m demo.loop [--epochs 2] [--events 12000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from demo.movielens import Api
from infra.local.stack import REPO_ROOT, LocalStack, configure_logging

WORK_DIR = REPO_ROOT / ".cache" / "demo-loop"
POST_CHUNK = 100  # the API's per-request limit
SWAP_TIMEOUT_S = 60.0
# The shop: big enough for a short run to learn something, small enough to replay in about a minute.
SHOP = {"items": 600, "categories": 24, "users": 400, "days": 8, "seed": 5}


class MotoKinesisRace(logging.Filter):
    """Counts and drops moto's tracebacks for one known race: its Kinesis shard is not thread-safe, so a
    GetRecords that runs while a PutRecords appends fails with a 500 ("OrderedDict mutated during
    iteration"); the poller reads the same records again on its next call, nothing is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        # werkzeug puts the traceback into the message itself ("Error on request:\n<traceback>").
        if "kinesis" in record.getMessage() and "OrderedDict mutated during iteration" in record.getMessage():
            self.count += 1
            return False
        return True


def step(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def shop_traffic(events: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events as the API takes them, with a user_id; the catalog records), shifted to end a second ago."""
    from dataio import synthetic

    data = synthetic.generate(synthetic.Config(events=events, **SHOP))
    shift = int(time.time() * 1000) - 1000 - int(data.event_time.max())
    out = []
    for n, line in enumerate(synthetic.interaction_lines(data)):
        row = json.loads(line)
        event = {
            "user_id": row["user_id"],
            "event_id": f"shop-{n}",
            "item_id": row["item_id"],
            "type": row["type"],
            "timestamp": row["timestamp"] + shift,
        }
        if "value" in row:
            event["value"] = row["value"]
        out.append(event)
    return out, data.items


def post(api: Api, events: list[dict[str, Any]]) -> int:
    """Each user's events in time order, up to 100 per request; returns how many were accepted."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append({k: v for k, v in event.items() if k != "user_id"})
    accepted = 0
    for user, rows in by_user.items():
        for start in range(0, len(rows), POST_CHUNK):
            accepted += api.post_events(user, rows[start : start + POST_CHUNK])["accepted"]
    return accepted


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'core'}{os.pathsep}{REPO_ROOT}"}


def retrain(archive: Path, described: Path, epochs: int, log_path: Path) -> tuple[int, dict[str, Any]]:
    """`python -m model_build.retrain` on the archive, publishing to the running stack's registry."""
    command = [
        sys.executable,
        *("-m", "model_build.retrain", "--archive", str(archive), "--days", "10"),
        *("--epochs", str(epochs), "--learning-rate", "0.01", "--min-holdout", "20"),
        *("--local-stack", str(described), "--out", str(WORK_DIR / "candidates")),
    ]
    print("      $ python -m model_build.retrain " + " ".join(command[3:]), flush=True)
    with log_path.open("w") as log_file:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log_file, text=True, env=python_env())
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {"outcome": f"no report (see {log_path})"}
    return done.returncode, report


def show_gate(code: int, report: dict[str, Any]) -> None:
    gate = report.get("gate")
    if not gate:
        print(f"      exit {code}: {report.get('outcome')} {report.get('reason', '')}")
        return
    holdout, data = report["holdout"], report["data"]
    print(
        f"      window {report['window']['first_day']} .. {report['window']['last_day']}: "
        f"{data['interactions']} interactions, {data['users']} users, catalog {data['items']} items"
    )
    print(f"      held out: {holdout['users']} users' last new item since {holdout['from']}")
    print(f"      {'model':<44} {'HR@10':>7} {'NDCG@10':>8}   knows the target")
    for role in ("serving", "candidate"):
        numbers = gate[role]
        print(
            f"      {role + ' ' + gate[role + '_version']:<44} {numbers['HR@10']:7.3f} "
            f"{numbers['NDCG@10']:8.4f}   {gate[role + '_knows_targets']}/{gate['holdout_users']}"
        )
    se = gate["difference_standard_error"]
    print(
        f"      gate: candidate NDCG@10 >= serving - {gate['tolerance']}: "
        f"difference {gate['difference']:+.4f}"
        f" (paired s.e. {se:.4f}) -> {report['outcome']} (exit {code}); "
        f"training {report['candidate'].get('seconds', '?')} s"
    )


def wait_for_version(api: Api, user: str, wanted: str) -> tuple[float, dict[str, Any]]:
    """Seconds until GET /v1/recommendations names `wanted` (polling), and that answer."""
    started = time.perf_counter()
    while True:
        body = api.recommendations(user, k=5)
        if body["model_version"] == wanted:
            return time.perf_counter() - started, body
        if time.perf_counter() - started > SWAP_TIMEOUT_S:
            raise RuntimeError(f"the stack still answers {body['model_version']}, not {wanted}")
        time.sleep(0.2)


def show_answer(body: dict[str, Any], titles: dict[str, str]) -> None:
    top = ", ".join(titles.get(i["item_id"], i["item_id"]) for i in body["items"][:3])
    print(f"      model_version {body['model_version']}  source {body['source']}: {top}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=12000, help="events of the generated shop to replay")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each retrain (a short run)")
    parser.add_argument(
        "--rounds",
        type=int,
        choices=(1, 2),
        default=2,
        help="retrains (the second is gated against the first)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    moto_race = MotoKinesisRace()
    logging.getLogger("werkzeug").addFilter(moto_race)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    started = time.perf_counter()
    total = 4 + args.rounds
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    archive = WORK_DIR / "archive"
    described = WORK_DIR / "local-stack.json"

    print("rtrec learning loop: traffic -> archive -> retrain -> gate -> publish -> hot swap -> rollback")
    step(1, total, "generating a small shop and starting the local stack ...")
    events, items = shop_traffic(args.events)
    titles = {i["item_id"]: f"{i['item_id']} ({i['categories'][0].rsplit(' > ', 1)[-1]})" for i in items}
    environment = {
        "POWERTOOLS_LOG_LEVEL": args.log_level,
        "PER_USER_EVENT_RATE": "0",  # a replay of days in seconds is far above a person's rate
        "PER_USER_REQUEST_RATE": "0",
        "MODEL_POINTER_MAX_AGE_S": "1",  # the template's 60 s would make the demo wait a minute per swap
    }
    stack = LocalStack(
        environment=environment, poll_interval_s=0.05, drop_metric_lines=True, archive_dir=archive
    )
    stack.start()
    try:
        api = Api(stack)
        info = stack.describe()
        described.write_text(json.dumps(info, indent=2))
        registry = info["model_registry"]
        print(
            f"      API {stack.api_url}; model registry s3://{registry['bucket']}/models/, "
            f"pointer {registry['pointer']} (in moto {stack.aws_endpoint_url})"
        )
        user = max({e["user_id"] for e in events}, key=lambda u: sum(e["user_id"] == u for e in events))
        bootstrap = api.recommendations(user, k=5)
        show_answer(bootstrap, titles)
        print("      (the layer's MovieLens model: it knows none of the shop's items)")

        cut = len(events) * 3 // 4
        phases = [events[:cut], events[cut:]] if args.rounds == 2 else [events]
        (archive / "catalog" / "items").mkdir(parents=True, exist_ok=True)
        (archive / "catalog" / "items" / "items.jsonl").write_text(
            "".join(json.dumps(i) + "\n" for i in items)
        )
        versions = [bootstrap["model_version"]]
        for round_number, phase in enumerate(phases, start=1):
            first = time.strftime("%Y-%m-%d %H:%M", time.gmtime(phase[0]["timestamp"] / 1000))
            last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(phase[-1]["timestamp"] / 1000))
            step(
                2 * round_number,
                total,
                f"the shop's traffic {first} .. {last} UTC through POST /v1/events ...",
            )
            t0 = time.perf_counter()
            accepted = post(api, phase)
            stack.wait_for_stream(120)
            archived = stack.archive.records if stack.archive else 0
            print(
                f"      {accepted} events accepted and ingested in {time.perf_counter() - t0:.0f} s; "
                f"the archive holds {archived} records under {archive.relative_to(REPO_ROOT)}/events/"
            )
            step(
                2 * round_number + 1,
                total,
                f"retrain #{round_number} from the archive ({args.epochs} epochs)",
            )
            code, report = retrain(archive, described, args.epochs, WORK_DIR / f"retrain-{round_number}.log")
            show_gate(code, report)
            if report.get("outcome") == "published":
                published = report["candidate"]["version"]
                waited, body = wait_for_version(api, user, published)
                print(f"      the running stack answered with {published} {waited:.1f} s after the publish:")
                show_answer(body, titles)
                _, interests = api.call("GET", "/v1/interests", user)
                best = sorted(interests["interests"].items(), key=lambda kv: -kv[1])[:2]
                print(
                    "      GET /v1/interests -> "
                    + ", ".join(f"{name} {share:.0%}" for name, share in best)
                    + f" (model_version {interests['model_version']})"
                )
                versions.append(published)
            elif code not in (0, 3):
                raise RuntimeError(f"retrain failed (exit {code}); see {WORK_DIR}/retrain-{round_number}.log")

        step(total, total, "rollback: point the live model back at the previous version")
        target = versions[-2] if len(versions) > 2 else "bootstrap"
        wanted = versions[-2] if len(versions) >= 2 else versions[0]
        command = [
            sys.executable,
            str(REPO_ROOT / "scripts" / "rollback_model.py"),
            target,
            *("--bucket", registry["bucket"], "--pointer", registry["pointer"]),
            *("--endpoint-url", stack.aws_endpoint_url),
        ]
        print(
            f"      $ python scripts/rollback_model.py {target} --bucket ... --endpoint-url ..."
            "  (make rollback)"
        )
        done = subprocess.run(command, capture_output=True, text=True, env=python_env())
        print("      " + (done.stdout or done.stderr).strip())
        waited, body = wait_for_version(api, user, wanted)
        print(f"      the running stack answered with {wanted} again {waited:.1f} s later:")
        show_answer(body, titles)
    finally:
        stack.stop()
        logging.shutdown()
    if moto_race.count:
        print(
            f"\n(moto answered {moto_race.count} GetRecords with a 500 in a known race of its own; retried)"
        )
    print(
        f"\ndemo-loop took {time.perf_counter() - started:.0f} s "
        f"(work files in {WORK_DIR.relative_to(REPO_ROOT)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
