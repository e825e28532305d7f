"""The whole service through the local stack, over HTTP, with boto3 clients against its AWS.

The stack runs as `make local` runs it (python -m infra.local.stack) in a child process:
the real template, the real handlers, the real model artifact.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from infra.local.auth import LocalIdentityProvider
from tests.builders import call_api, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def start_stack(work: Path) -> dict:
    """Start `python -m infra.local.stack` as `make local` does; returns once it is serving."""
    ready, key, log = work / "ready.json", work / "key.pem", work / "stack.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [sys.executable, "-m", "infra.local.stack", "--port", "0", "--ready-file", str(ready)]
    command += ["--key-file", str(key), "--log-level", "INFO", "--archive-dir", str(work / "archive")]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(process)
            pytest.fail(f"local stack did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    info = json.loads(ready.read_text())
    identity = LocalIdentityProvider.from_key_file(key, info["issuer"], info["audiences"])
    return {"info": info, "identity": identity, "process": process, "log": log, "archive": work / "archive"}


def stop_stack(process: subprocess.Popen) -> int:
    """Ctrl-C, as a developer would; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("e2e"))
    yield stack
    stop_stack(stack["process"])


def call(stack: dict, method: str, path: str, user: str | None = None, body=None) -> tuple[int, dict]:
    token = stack["identity"].mint(user) if user else None
    url = stack["info"]["api_url"] + path
    status, answer, _ = call_api(url, method, token=token, body=body, timeout_s=30)
    return status, answer


def client(stack: dict, service: str):
    return boto3.client(
        service,
        endpoint_url=stack["info"]["aws_endpoint_url"],
        region_name=stack["info"]["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_requests_without_a_valid_token_are_refused(local_stack):
    assert call(local_stack, "GET", "/v1/recommendations")[0] == 401
    assert call(local_stack, "GET", "/v1/interests")[0] == 401
    status, _ = call(local_stack, "POST", "/v1/events", body={"events": []})
    assert status == 401
    foreign = LocalIdentityProvider(local_stack["identity"].issuer, local_stack["identity"].audiences)
    url = local_stack["info"]["api_url"] + "/v1/recommendations"
    assert call_api(url, token=foreign.mint("e2e-intruder"))[0] == 401


def test_events_in_change_the_next_recommendations(local_stack):
    user = "e2e-reader"
    status, before = call(local_stack, "GET", "/v1/recommendations?k=10", user)
    assert status == 200 and len(before["items"]) == 10
    consumed = [item["item_id"] for item in before["items"][:5]]
    now = int(time.time() * 1000)
    events = [
        {"event_id": f"e2e-{i}", "item_id": item, "type": "rating", "value": 5, "timestamp": now - 1000 + i}
        for i, item in enumerate(consumed)
    ]
    status, accepted = call(local_stack, "POST", "/v1/events", user, {"events": events})
    assert (status, accepted["accepted"]) == (202, 5)

    def changed():
        _, after = call(local_stack, "GET", "/v1/recommendations?k=10", user)
        ids = [item["item_id"] for item in after["items"]]
        return after if not set(consumed) & set(ids) else None

    after = wait_for(changed, timeout_s=30)
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    assert after["source"] == "model"
    table = local_stack["info"]["resources"]["UserStateTable"]["Ref"]
    item = client(local_stack, "dynamodb").get_item(TableName=table, Key={"user_id": {"S": user}})["Item"]
    assert {entry["M"]["item_id"]["S"] for entry in item["recent"]["L"]} == set(consumed)


def test_poison_record_lands_in_the_dead_letter_queue(local_stack):
    resources = local_stack["info"]["resources"]
    client(local_stack, "kinesis").put_record(
        StreamName=resources["EventStream"]["Ref"], PartitionKey="e2e-poison", Data=b"{not json"
    )
    sqs = client(local_stack, "sqs")
    queue_url = resources["DeadLetterQueue"]["Ref"]

    def poison_letter():
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            if "not valid JSON" in message["Body"]:
                return json.loads(message["Body"])
        return None

    letter = wait_for(poison_letter, timeout_s=30)
    assert "not valid JSON" in letter["reason"]
    # The archive, like Firehose, puts a record it cannot partition under errors/, not events/.
    errors = wait_for(lambda: archived(local_stack["archive"], "errors") or None, timeout_s=10)
    raw = {base64.b64decode(r["rawData"]) for records in errors.values() for r in records}
    assert b"{not json" in raw
    # Only the local poller delivers stream records: moto's own Lambda (Docker) never tries to.
    assert "docker" not in local_stack["log"].read_text().lower()


def archived(root: Path, prefix: str) -> dict[Path, list[dict]]:
    """The archive's JSON lines under ``prefix``, by file."""
    return {
        path: [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
        for path in sorted(root.glob(f"{prefix}/**/*.jsonl.gz"))
    }


def test_accepted_events_land_in_the_archive_by_kind_and_day(local_stack):
    user = "e2e-archived"
    now = int(time.time() * 1000)
    events = [
        {"event_id": f"arch-{i}", "item_id": str(50 + i), "type": "click", "timestamp": now - i}
        for i in range(3)
    ]
    status, accepted = call(local_stack, "POST", "/v1/events", user, {"events": events})
    assert (status, accepted["accepted"]) == (202, 3)

    def users_files():
        found = {
            path: [r for r in records if r["user_id"] == user]
            for path, records in archived(local_stack["archive"], "events").items()
        }
        found = {path: records for path, records in found.items() if records}
        return found if sum(len(records) for records in found.values()) >= 3 else None

    found = wait_for(users_files, timeout_s=30)
    records = [r for rs in found.values() for r in rs]
    assert sorted(r["event_id"] for r in records) == ["arch-0", "arch-1", "arch-2"]  # each exactly once
    for path, records in found.items():
        days = {time.strftime("%Y-%m-%d", time.gmtime(r["ts"] // 1000)) for r in records}
        assert path.parent.parent.name == "kind=event" and {path.parent.name} == {f"dt={d}" for d in days}


def test_ctrl_c_stops_everything_cleanly(tmp_path):
    stack = start_stack(tmp_path)
    assert call(stack, "GET", "/v1/interests", "e2e-someone")[0] == 200
    assert stop_stack(stack["process"]) == 0
    log = stack["log"].read_text()
    assert "local stack stopped" in log
    assert "Traceback" not in log
