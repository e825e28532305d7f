"""Impressions reach the archive locally as the template's subscription ships them, naming the variant."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path

import boto3
import pytest

from infra.local.archive import ImpressionSink, LocalArchive, subscribed_functions
from infra.local.inprocess import InProcessService
from infra.local.template import Template
from rtrec.impressions import FILTER_PATTERN, impression_record
from tests.conftest import MODEL_DIR, REPO_ROOT

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")

EXPERIMENT = {
    "name": "model-vs-popular",
    "variants": [
        {"name": "model", "settings": {}},
        {"name": "popular", "settings": {"popular_only": True}},
    ],
}


def archived_impressions(root: Path) -> list[tuple[str, dict]]:
    """(partition directory, record) of every impression line under ``root``."""
    out = []
    for path in sorted(root.glob("events/kind=impression/dt=*/*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).decode().splitlines():
            out.append((path.parent.relative_to(root).as_posix(), json.loads(line)))
    return out


def test_the_subscription_targets_the_recommend_function_only():
    document = Template(REPO_ROOT / "template.yaml").document
    assert subscribed_functions(document) == {"RecommendFunction"}
    subscription = document["Resources"]["ImpressionSubscription"]["Properties"]
    assert subscription["FilterPattern"] == FILTER_PATTERN


def test_a_sink_keeps_impression_lines_only_and_partitions_them_by_day(tmp_path):
    archive = LocalArchive(tmp_path)
    sink = ImpressionSink(archive, logging.Formatter("%(message)s"), max_records=10)
    logger = logging.getLogger("test-impression-sink")
    logger.propagate = False
    logger.addHandler(sink)
    logger.setLevel(logging.INFO)
    try:
        logger.info("answered")
        logger.info("impression")  # the plain formatter gives no JSON: not an impression line
        sink.line_formatter = _JsonFormatter()
        logger.info(
            "impression",
            extra={
                "record": impression_record("r1", "u1", "GET /x", "v1", [("i1", "model")], 1_764_288_000_000)
            },
        )
        assert archived_impressions(tmp_path) == []  # held, as Firehose buffers
        sink.flush()
    finally:
        logger.removeHandler(sink)
    [(partition, record)] = archived_impressions(tmp_path)
    assert partition == "events/kind=impression/dt=2025-11-28"
    assert record["recommendation_id"] == "r1" and record["items"] == [["i1", "model"]]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"message": record.getMessage(), **record.record})  # type: ignore[attr-defined]


def test_answers_and_their_impressions_name_the_variant_and_land_in_the_archive(tmp_path):
    overrides = {
        "EXPLORATION_SHARE": "0",
        "PER_USER_REQUEST_RATE": "0",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "EXPERIMENT_PARAMETER": "/test/experiment",
    }
    with InProcessService(
        REPO_ROOT / "template.yaml", overrides, drop_metric_lines=True, archive_dir=tmp_path
    ) as service:
        boto3.client("ssm").put_parameter(
            Name="/test/experiment", Value=json.dumps(EXPERIMENT), Type="String"
        )
        items = service.functions["RecommendFunction"].module.recommender.catalog.item_ids[:20]
        now = int(time.time() * 1000)
        service.ingest(
            (f"user-{n}", json.dumps({"user_id": f"user-{n}", "event_id": f"e{n}-{m}", "item_id": item,
                                      "type": "rating", "value": 5, "ts": now - 1000 + m}).encode())
            for n in range(12)
            for m, item in enumerate(items[n % 5 : n % 5 + 6])
        )  # fmt: skip
        answers = {}
        for n in range(12):
            status, body = service.http("GET", "/v1/recommendations", f"user-{n}", "k=5")
            assert status == 200
            answers[body["recommendation_id"]] = body
        service.flush_impressions()
    variants = {body["variant"] for body in answers.values()}
    assert variants == {"model", "popular"}
    # The popular-only variant answers popular items to users the model knows, and is not degraded.
    for body in answers.values():
        assert body["source"] == ("model" if body["variant"] == "model" else "popular")
        assert not body["degraded"] and body["items"]
    assert all(body["experiment"] == "model-vs-popular" for body in answers.values())
    records = archived_impressions(tmp_path)
    assert {record["recommendation_id"] for _, record in records} == set(answers)
    for partition, record in records:
        body = answers[record["recommendation_id"]]
        assert partition.startswith("events/kind=impression/dt=")
        assert record["variant"] == body["variant"] and record["user_id"].startswith("user-")
        assert record["items"] == [[item["item_id"], item["reason"]] for item in body["items"]]
        assert record["degraded"] is False and record["latency_ms"] > 0
