"""Kinesis -> per-user state in DynamoDB: a thin handler around ``rtrec.ingest.BatchIngestor``.

The batch algorithm (grouping by user, one conditional write per user, poison versus transient,
dead letters, the deadline) lives in the core with its own tests. The answer has the
ReportBatchItemFailures shape, read by the event source mapping.

The same function receives the recommend function's impression log lines from a CloudWatch Logs
subscription (``{"awslogs": ...}``, invoked asynchronously) and folds them into the users' shown
lists (rotation, ``rtrec.rotation``) with the same store and version lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtrec.events import Event
from rtrec.features import Catalog
from rtrec.ingest import BatchIngestor, IngestPolicy, InvalidLogPayload, kinesis_records, log_events
from rtrec.registry import BOOTSTRAP, ModelSource, ModelWatcher, watch_registry
from rtrec.settings import IngestSettings, ModelRegistrySettings
from rtrec.stores.clients import ClientTimeouts, aws_client
from rtrec.stores.dead_letters import DeadLetterQueue
from rtrec.stores.trending import TrendingTable
from rtrec.stores.user_state import UserStateStore
from rtrec.trending import TrendingRecorder, TrendingWrite

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def load_catalog(model_dir: str | None) -> Catalog | None:
    """The item -> category table from the model artifact; None (no interests) when it is absent."""
    path = Path(model_dir or "") / "items.json"
    if not model_dir or not path.is_file():
        logger.warning("no catalog at MODEL_DIR; interests will not be updated", extra={"path": str(path)})
        return None
    return Catalog.load(path)


def _log_error(message: str, error: BaseException, extra: dict[str, Any]) -> None:
    logger.warning(message, extra={**extra, "error": f"{type(error).__name__}: {error}"})


def build_ingestor(settings: IngestSettings) -> BatchIngestor:
    """The ingestor with real clients, built once per container."""
    return BatchIngestor(
        store=UserStateStore.from_client(aws_client("dynamodb", settings.dynamodb), settings.table_name),
        dead_letters=DeadLetterQueue(aws_client("sqs", settings.sqs), settings.dead_letter_queue_url),
        catalog=load_catalog(settings.model_dir),
        policy=IngestPolicy(
            ttl_seconds=settings.ttl_seconds,
            dedupe_horizon_ms=settings.dedupe_horizon_ms,
            write_concurrency=settings.write_concurrency,
            max_write_attempts=settings.max_write_attempts,
            deadline_reserve_ms=settings.deadline_reserve_ms,
            source=settings.function_name,
        ),
        on_error=_log_error,
    )


def build_trending(settings: IngestSettings) -> TrendingRecorder | None:
    """The trending counters' writer, or None when TRENDING_TABLE is not set.

    Its own client makes one attempt per call: a trending write is best effort and must never hold
    the batch (the state writes are done by then) near the function's timeout.
    """
    if settings.trending is None:
        return None
    timeouts = ClientTimeouts(settings.dynamodb.connect_s, settings.dynamodb.read_s, max_attempts=1)
    table = TrendingTable(
        aws_client("dynamodb", timeouts), settings.trending.table_name, settings.trending.config.shards
    )
    return TrendingRecorder(table, settings.trending.config, concurrency=settings.write_concurrency)


def layer_version(model_dir: str | None) -> str:
    """The version of the layer's model (metadata.json), the registry's ``bootstrap``."""
    try:
        return str(json.loads((Path(model_dir or "") / "metadata.json").read_text())["version"])
    except Exception:
        return BOOTSTRAP


def follow_registry(
    registry: ModelRegistrySettings | None, model_dir: str | None
) -> ModelWatcher[Catalog] | None:
    """Interests in the live model's vocabulary: a watcher on the registry's pointer, or None (layer only).

    A version is followed only once it loads and passes the same checks the recommend function applies,
    so both functions move to the same versions; its items.json replaces the fold's catalog.
    """
    if registry is None:
        return None
    bootstrap = layer_version(model_dir)

    def load(source: ModelSource, version: str) -> Catalog:
        catalog: Catalog = source.load(version).catalog
        source.prune({version})
        return catalog

    def load_bootstrap() -> Catalog:
        catalog = load_catalog(model_dir)
        if catalog is None:
            raise RuntimeError(f"no items.json at {model_dir}")
        return catalog

    return watch_registry(registry, load, load_bootstrap, bootstrap, bootstrap, _model_failure)


def _model_failure(kind: str, message: str, error: BaseException) -> None:
    """The fold keeps its catalog when the pointer cannot be read or a version does not load."""
    logger.error(message, extra={"error": f"{type(error).__name__}: {error}"})
    name = "ModelLoadFailures" if kind == "load" else "ModelPointerReadFailures"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def follow_model() -> None:
    """Fold with the catalog of the version the pointer names, if it moved (one look per max age)."""
    if model_updates is None:
        return
    swap = model_updates.poll()
    if swap is not None:
        ingestor.catalog = swap.model
        metrics.add_metric(name="ModelSwaps", unit=MetricUnit.Count, value=1)
        logger.info("catalog swapped", extra={"model_version": swap.version})


settings = IngestSettings.from_env()
ingestor = build_ingestor(settings)
trending = build_trending(settings)
model_updates = follow_registry(settings.registry, settings.model_dir)


class ImpressionsNotWritten(RuntimeError):
    """Some users' shown items hit transient store trouble: Lambda retries the (idempotent) delivery."""


def fold_impressions(event: dict[str, Any]) -> dict[str, Any]:
    """A CloudWatch Logs delivery of impression lines: fold them, or say why the payload is unusable.

    A payload that does not decode is logged and dropped (raising would only have Lambda retry the
    same bytes); transient store trouble raises after every other user was written, so Lambda's
    asynchronous retry delivers the batch again and the idempotent fold adds only what is missing.
    """
    try:
        lines = log_events(event)
    except InvalidLogPayload as error:
        logger.error("impression delivery dropped", extra={"error": str(error)})
        metrics.add_metric(name="ImpressionPayloadsInvalid", unit=MetricUnit.Count, value=1)
        return {"impressions": 0}
    outcome = ingestor.process_impressions(lines)
    for name, value in (
        ("ImpressionsFolded", outcome.impressions),
        ("ImpressionsInvalid", outcome.invalid),
        ("ShownItemsAdded", outcome.shown_added),
        ("ShownUsersFailed", outcome.users_failed + outcome.users_refused),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info(
        "impressions done",
        extra={
            "lines": outcome.lines,
            "impressions": outcome.impressions,
            "invalid": outcome.invalid,
            "shown_added": outcome.shown_added,
            "duplicates": outcome.duplicates,
            "users_written": outcome.users_written,
            "users_without_state": outcome.users_without_state,
            "users_failed": outcome.users_failed,
            "users_refused": outcome.users_refused,
        },
    )
    if outcome.retry:
        raise ImpressionsNotWritten(f"{outcome.users_failed} users' shown items not written; retrying")
    return {"impressions": outcome.impressions}


def count_trending(applied: list[Event], context: LambdaContext) -> None:
    """Add the applied events to the trending counters; a failure is logged and counted, never raised.

    Only events the fold applied are counted, so a redelivered batch (its records are duplicates by
    then) adds nothing twice. The batch's answer does not depend on this: state is what must be right.
    """
    if trending is None or not applied:
        return
    try:
        written = trending.record(applied, context.get_remaining_time_in_millis, settings.deadline_reserve_ms)
    except Exception as error:  # a bug here must not fail a batch whose states are written
        written = TrendingWrite(failed=len(applied), errors=[f"{type(error).__name__}: {error}"])
    metrics.add_metric(name="TrendingCountersWritten", unit=MetricUnit.Count, value=written.written)
    if written.failed:
        metrics.add_metric(name="TrendingWriteFailures", unit=MetricUnit.Count, value=written.failed)
        logger.warning(
            "trending counters not written; popularity misses these events",
            extra={"failed": written.failed, "written": written.written, "errors": written.errors},
        )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: the Kinesis event source mapping (ReportBatchItemFailures on), and the
    CloudWatch Logs subscription on the recommend function's impression lines."""
    follow_model()
    if "awslogs" in event:
        return fold_impressions(event)
    records = kinesis_records(event)
    if event.get("Records"):
        logger.set_correlation_id(event["Records"][0].get("eventID"))
    outcome = ingestor.process(records, remaining_ms=context.get_remaining_time_in_millis)
    count_trending(outcome.applied_events, context)
    for name, value in (
        ("EventsApplied", outcome.applied),
        ("DuplicateEvents", outcome.duplicates),
        ("PoisonRecords", outcome.poison),
        ("UsersWritten", outcome.users_written),
        ("WriteConflicts", outcome.write_conflicts),
        ("RecordsFailed", len(outcome.failures)),
        ("DeadlineSkipped", outcome.deadline_skipped),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if outcome.max_lag_ms is not None:
        metrics.add_metric(name="FreshnessLag", unit=MetricUnit.Milliseconds, value=outcome.max_lag_ms)
    logger.info(
        "batch done",
        extra={
            "records": len(records),
            "applied": outcome.applied,
            "duplicates": outcome.duplicates,
            "poison": outcome.poison,
            "users_written": outcome.users_written,
            "failed": len(outcome.failures),
        },
    )
    return outcome.response()
