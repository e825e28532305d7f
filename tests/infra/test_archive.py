"""The local event archive: the layout the template's Firehose writes, written by the local stack's parts."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.local.archive import LocalArchive, archived_streams, partition_of
from infra.local.inprocess import InProcessService
from infra.local.template import Template
from tests.conftest import MODEL_DIR, REPO_ROOT

DAY_MS = 86_400_000
NOV_30 = 1_764_460_800_000  # 2025-11-30T00:00:00Z


def record(event_id: str, ts: object, **extra) -> bytes:
    body = {"user_id": "u1", "event_id": event_id, "item_id": "i1", "type": "view", "ts": ts, **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def lines_under(directory: Path) -> list[bytes]:
    return [
        line
        for path in sorted(directory.glob("*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]


def test_partition_is_the_utc_day_of_ts_and_the_kind_event_unless_the_record_says_impression():
    assert partition_of(record("e", NOV_30)) == ("event", "2025-11-30")
    assert partition_of(record("e", NOV_30 - 1)) == ("event", "2025-11-29")
    assert partition_of(record("e", NOV_30, kind="impression")) == ("impression", "2025-11-30")
    assert partition_of(record("e", NOV_30, kind="anything-else")) == ("event", "2025-11-30")
    for bad in (b"{not json", b"[1]", record("e", "yesterday"), record("e", True), b'{"user_id":"u"}'):
        assert partition_of(bad) is None, bad


def test_a_batch_becomes_one_gzip_file_per_partition_with_the_records_as_written(tmp_path):
    archive = LocalArchive(tmp_path)
    batch = [record("a", NOV_30 + 5), record("b", NOV_30 - DAY_MS), record("c", NOV_30 + 9), b"{not json"]
    written = archive.write(batch)
    assert len(written) == 3 and all(p.name.endswith(".jsonl.gz") for p in written)
    events = tmp_path / "events" / "kind=event"
    assert lines_under(events / "dt=2025-11-30") == [batch[0], batch[2]]
    assert lines_under(events / "dt=2025-11-29") == [batch[1]]
    (error_file,) = (tmp_path / "errors" / "processing-failed").glob("dt=*/*.jsonl.gz")
    (error,) = [json.loads(line) for line in gzip.decompress(error_file.read_bytes()).splitlines()]
    assert base64.b64decode(error["rawData"]) == b"{not json"
    assert (archive.records, archive.errors) == (3, 1)
    archive.write([record("d", NOV_30)])  # a second batch: a new file, the first one untouched
    assert len(list((events / "dt=2025-11-30").glob("*.jsonl.gz"))) == 2
    assert not list(tmp_path.rglob(".*.tmp"))


def test_the_local_stack_archives_the_stream_the_templates_firehose_reads():
    assert archived_streams(Template(REPO_ROOT / "template.yaml").document) == {"EventStream"}
    assert archived_streams({"Resources": {}}) == set()


@pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")
def test_the_in_process_harness_archives_each_ingested_batch(tmp_path):
    overrides = {"POWERTOOLS_LOG_LEVEL": "ERROR", "PER_USER_EVENT_RATE": "0", "PER_USER_REQUEST_RATE": "0"}
    archive_dir = tmp_path / "archive"
    with InProcessService(
        REPO_ROOT / "template.yaml", overrides, drop_metric_lines=True, archive_dir=archive_dir
    ) as service:
        batch = [("u1", record("x1", NOV_30 + 1)), ("u1", record("x2", NOV_30 + 2))]
        assert service.ingest(batch) == {"batchItemFailures": []}
    assert lines_under(archive_dir / "events" / "kind=event" / "dt=2025-11-30") == [data for _, data in batch]


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq on PATH")
def test_the_templates_jq_query_and_the_local_rule_agree():
    """Firehose runs the template's query with jq 1.6; the local archive must partition as it does."""
    stream = Template(REPO_ROOT / "template.yaml").of_type("AWS::KinesisFirehose::DeliveryStream")[
        "ArchiveDeliveryStream"
    ]
    processors = stream["Properties"]["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"][
        "Processors"
    ]
    (extraction,) = [p for p in processors if p["Type"] == "MetadataExtraction"]
    query = next(
        p["ParameterValue"]
        for p in extraction["Parameters"]
        if p["ParameterName"] == "MetadataExtractionQuery"
    )
    samples = [
        record("a", NOV_30),
        record("b", NOV_30 - 1),
        record("c", NOV_30 + DAY_MS - 1, kind="impression"),
        record("d", NOV_30, kind="other"),
        record("e", 946_684_800_000),  # 2000-01-01, the oldest timestamp the API accepts
        b'{"ts": 1764460800123.5}',
    ]
    for data in samples:
        answer = subprocess.run(["jq", "-c", query], input=data, capture_output=True, check=True).stdout
        partition = json.loads(answer)
        assert (partition["kind"], partition["dt"]) == partition_of(data), data
    for bad in (b"{not json", b'{"user_id": "u"}'):
        assert subprocess.run(["jq", "-c", query], input=bad, capture_output=True).returncode != 0
        assert partition_of(bad) is None
