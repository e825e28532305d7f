"""The event archive on this machine: what the template's Firehose writes to S3, as files.

In AWS, `ArchiveDeliveryStream` (template.yaml) reads every record of the event stream and writes it,
as the producer wrote it plus a newline, gzip-compressed, under

    events/kind=<kind>/dt=<yyyy-MM-dd>/<name>.jsonl.gz

where `kind` is "impression" when the record says so and "event" otherwise, and `dt` is the UTC day
of the record's `ts` (epoch ms): the jq query in the template, `partition_of` here. Records that
rule cannot read (not a JSON object, no numeric `ts`) go under `errors/processing-failed/dt=<day>/`.

moto's Firehose never reads a Kinesis stream, so the local stack does it: the stream poller hands
every batch it reads (`GetRecords`, before and independently of the ingest function, like Firehose,
which is a consumer of its own) to `LocalArchive.write`, which writes one new file per partition
and batch (written to a hidden temporary name, then renamed: a reader never sees half a file). The
in-process harness (`infra.local.inprocess`) does the same with each batch it ingests. The default
root is `.cache/archive` (git-ignored); `dataio.archive.ArchiveAdapter` and `sql/*.sql` read it.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("local.archive")

EVENTS_PREFIX = "events"
ERRORS_PREFIX = "errors/processing-failed"
KINDS = ("event", "impression")
FILE_EXTENSION = ".jsonl.gz"


def partition_of(data: bytes) -> tuple[str, str] | None:
    """(kind, dt) of one stream record, as the template's jq query computes them; None if it cannot.

    jq: ``{kind: (if .kind == "impression" then "impression" else "event" end),
    dt: (.ts / 1000 | floor | strftime("%Y-%m-%d"))}``.
    """
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    try:
        day = datetime.fromtimestamp(ts // 1000, tz=UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return None
    kind = "impression" if record.get("kind") == "impression" else "event"
    return kind, day


def partition_dir(root: Path, kind: str, day: str) -> Path:
    return Path(root) / EVENTS_PREFIX / f"kind={kind}" / f"dt={day}"


class LocalArchive:
    """Writes batches of stream records into the archive layout under ``root`` (thread-safe)."""

    def __init__(self, root: str | Path, name: str = "rtrec-local-archive") -> None:
        self.root = Path(root)
        self.name = name
        self.records = 0
        self.errors = 0
        self._lock = threading.Lock()

    def write(self, records: Iterable[bytes]) -> list[Path]:
        """Archive one batch: one new gzip file per partition it touches; returns the files written."""
        partitions: dict[tuple[str, str], list[bytes]] = {}
        failed: list[bytes] = []
        for data in records:
            key = partition_of(data)
            if key is None:
                failed.append(data)
            else:
                partitions.setdefault(key, []).append(data.rstrip(b"\n") + b"\n")
        written = [
            self._write_file(partition_dir(self.root, kind, day), lines)
            for (kind, day), lines in partitions.items()
        ]
        if failed:
            written.append(self._write_errors(failed))
        with self._lock:
            self.records += sum(len(lines) for lines in partitions.values())
            self.errors += len(failed)
        return written

    def _write_file(self, directory: Path, lines: list[bytes]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S")
        final = directory / f"{self.name}-{stamp}-{uuid.uuid4()}{FILE_EXTENSION}"
        temporary = directory / f".{final.name}.tmp"
        temporary.write_bytes(gzip.compress(b"".join(lines), mtime=0))
        os.replace(temporary, final)
        return final

    def _write_errors(self, failed: list[bytes]) -> Path:
        """Firehose's error records: the raw data in base64 with the reason, one JSON line each."""
        now_ms = int(time.time() * 1000)
        day = datetime.fromtimestamp(now_ms // 1000, tz=UTC).strftime("%Y-%m-%d")
        lines = [
            json.dumps(_error_record(data, now_ms), separators=(",", ":")).encode() + b"\n" for data in failed
        ]
        log.warning("archive: %d record(s) without a partition (not JSON, or no numeric ts)", len(failed))
        return self._write_file(self.root / ERRORS_PREFIX / f"dt={day}", lines)


def _error_record(data: bytes, now_ms: int) -> dict[str, Any]:
    return {
        "attemptsMade": 1,
        "arrivalTimestamp": now_ms,
        "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
        "errorMessage": "the record is not a JSON object with a numeric ts",
        "attemptEndingTimestamp": now_ms,
        "rawData": base64.b64encode(data).decode("ascii"),
    }


def archived_streams(document: dict[str, Any]) -> set[str]:
    """Logical ids of the Kinesis streams a Firehose delivery stream of the template reads."""
    streams = set()
    for resource in (document.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::KinesisFirehose::DeliveryStream":
            continue
        source = (resource.get("Properties") or {}).get("KinesisStreamSourceConfiguration") or {}
        arn = source.get("KinesisStreamARN")
        if isinstance(arn, dict) and isinstance(arn.get("Fn::GetAtt"), list):
            streams.add(arn["Fn::GetAtt"][0])
        elif isinstance(arn, dict) and isinstance(arn.get("Fn::GetAtt"), str):
            streams.add(arn["Fn::GetAtt"].split(".", 1)[0])
    return streams


class ImpressionSink(logging.Handler):
    """The impression subscription locally: a function's impression log lines into the archive.

    In AWS a CloudWatch Logs subscription filter (``{ $.message = "impression" }``) sends the recommend
    function's impression lines to a Firehose stream that writes them under
    ``events/kind=impression/dt=<day>/`` (template.yaml ``ImpressionSubscription``). Here the handler is
    attached to the function's Powertools logger: it formats each record as the function's own line
    (the same JSON the log group receives), keeps the impression lines and writes them with
    ``LocalArchive.write`` (their ``kind`` and ``ts`` pick the partition), ``max_records`` per file
    (Firehose's buffer; ``flush`` writes what is held).
    """

    def __init__(self, archive: LocalArchive, formatter: logging.Formatter, max_records: int = 1) -> None:
        super().__init__()
        self.archive = archive
        self.line_formatter = formatter
        self.max_records = max(1, max_records)
        self._held: list[bytes] = []
        self._held_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != "impression":
            return
        line = self.line_formatter.format(record)
        try:
            parsed = json.loads(line)
        except ValueError:
            return
        if not (isinstance(parsed, dict) and parsed.get("kind") == "impression"):
            return
        with self._held_lock:
            self._held.append(line.encode())
            full = len(self._held) >= self.max_records
        if full:
            self.flush()

    def flush(self) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        if held:
            self.archive.write(held)


def attach_impression_sink(module: Any, archive: LocalArchive, max_records: int = 1) -> ImpressionSink | None:
    """Subscribe ``archive`` to the impression lines of a loaded function (its module's ``logger``)."""
    logger = getattr(module, "logger", None)
    formatter = getattr(logger, "registered_formatter", None)
    if logger is None or formatter is None:
        return None
    sink = ImpressionSink(archive, formatter, max_records)
    logging.getLogger(logger.name).addHandler(sink)
    return sink


def subscribed_functions(document: dict[str, Any]) -> set[str]:
    """Logical ids of the functions whose log group a subscription filter sends to a Firehose stream."""
    resources = document.get("Resources") or {}
    groups = set()
    for resource in resources.values():
        if resource.get("Type") != "AWS::Logs::SubscriptionFilter":
            continue
        properties = resource.get("Properties") or {}
        destination = properties.get("DestinationArn")
        target = destination.get("Fn::GetAtt") if isinstance(destination, dict) else None
        target_id = (
            (target[0] if isinstance(target, list) else str(target).split(".", 1)[0]) if target else None
        )
        if (
            target_id
            and (resources.get(target_id) or {}).get("Type") == "AWS::KinesisFirehose::DeliveryStream"
        ):
            group = properties.get("LogGroupName")
            if isinstance(group, dict) and "Ref" in group:
                groups.add(group["Ref"])
    functions = set()
    for function_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        group = ((resource.get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup")
        if isinstance(group, dict) and group.get("Ref") in groups:
            functions.add(function_id)
    return functions
