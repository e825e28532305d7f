"""The template's functions called directly in this process, against moto's in-memory AWS.

No servers and no threads: the streaming replay evaluation (`evaluation/replay.py`) uses it to
push tens of thousands of events through the real ingest and recommend handlers quickly. The
functions are deployed and wired exactly as in the local stack (`runtime.FunctionHost`).
With `archive_dir`, every batch given to `ingest` is also written to the event archive there, as
the template's Firehose would (`infra.local.archive`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moto import mock_aws

from infra.local.archive import LocalArchive, attach_impression_sink, subscribed_functions
from infra.local.aws import KinesisSource
from infra.local.http_api import build_http_event
from infra.local.log_subscriptions import LogSubscriptions
from infra.local.poller import kinesis_event_record
from infra.local.runtime import FunctionHost, LocalFunction
from infra.local.template import Template

_SHARD_ID = "shardId-000000000000"


class InProcessService:
    """Context manager: moto in memory, the template deployed into it, the handlers loaded."""

    def __init__(
        self,
        template_path: str | Path,
        environment: dict[str, str] | None = None,
        region: str | None = None,
        drop_metric_lines: bool = False,
        archive_dir: str | Path | None = None,
    ) -> None:
        self.template = Template(template_path)
        self.archive = LocalArchive(archive_dir, name="rtrec-inprocess-archive") if archive_dir else None
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.host = FunctionHost(self.template, self.region, environment, drop_metric_lines)
        self.stream_source: KinesisSource | None = None
        self._mock = mock_aws()
        self._sequence = 0

    @property
    def functions(self) -> dict[str, LocalFunction]:
        return self.host.functions

    @property
    def batch_size(self) -> int:
        """The stream mapping's BatchSize: what one `ingest` call should carry at most."""
        return self.stream_source.batch_size if self.stream_source else 100

    def __enter__(self) -> InProcessService:
        self._mock.start()
        try:
            self.host.start(endpoint_url=None)
        except BaseException:
            self.__exit__()
            raise
        self.stream_source = next(iter(self.host.deployment.kinesis_sources()), None)
        self.impression_sinks = []
        if self.archive is not None:  # the impression subscription: impression log lines to the archive
            for function_id in subscribed_functions(self.template.document):
                if function_id in self.functions:
                    sink = attach_impression_sink(self.functions[function_id].module, self.archive, 200)
                    if sink is not None:
                        self.impression_sinks.append(sink)
        self.log_subscriptions = LogSubscriptions(self.template.document, self.functions).install()
        return self

    def flush_impressions(self) -> None:
        """Write the impressions the sinks hold (Firehose's buffer) to the archive."""
        for sink in getattr(self, "impression_sinks", []):
            sink.flush()

    def __exit__(self, *exc: object) -> None:
        self.flush_impressions()
        if getattr(self, "log_subscriptions", None) is not None:
            self.log_subscriptions.stop()
        self.host.stop()
        self._mock.stop()

    def replace_user_state_store(self, store: Any) -> None:
        """Give every handler `store` as its user-state store (the replay's in-memory table).

        Sets the handlers' documented module attributes: ingest's `ingestor.store` and
        recommend's `user_states`, both built once at init.
        """
        for function in self.functions.values():
            if hasattr(function.module, "user_states"):
                function.module.user_states = store
            ingestor = getattr(function.module, "ingestor", None)
            if ingestor is not None:
                ingestor.store = store

    def route_function(self, method: str, path: str) -> LocalFunction:
        for route in self.template.http_routes():
            if route.method == method and route.path == path:
                return self.functions[route.function_id]
        raise KeyError(f"no route {method} {path} in the template")

    def http(self, method: str, path: str, sub: str, query: str = "", body: Any = None) -> tuple[int, Any]:
        """Call a route as the authorized user `sub`; returns (status, parsed JSON body)."""
        event = build_http_event(
            route_key=f"{method} {path}",
            method=method,
            raw_path=path,
            raw_query=query,
            headers=[("content-type", "application/json")],
            body=json.dumps(body).encode() if body is not None else b"",
            path_parameters={},
            claims={"sub": sub, "token_use": "access", "client_id": "inprocess", "iss": "inprocess"},
            source_ip="127.0.0.1",
            api_id="inprocess",
            host="localhost",
        )
        result = self.route_function(method, path).invoke(event)
        if isinstance(result, dict) and "statusCode" in result:
            return int(result["statusCode"]), json.loads(result.get("body") or "null")
        return 200, result

    def deliver_logs(self) -> int:
        """Deliver the log lines the template's log subscriptions select so far (impressions -> ingest)."""
        return self.log_subscriptions.flush()

    def ingest(self, records: Iterable[tuple[str, bytes]]) -> dict:
        """Invoke the stream function with one Kinesis batch of (partition key, data) records."""
        if self.stream_source is None:
            raise RuntimeError("the template has no Kinesis event source")
        function = self.functions[self.stream_source.function_id]
        records = list(records)
        if self.archive is not None:
            self.archive.write([data for _, data in records])
        batch = []
        for partition_key, data in records:
            self._sequence += 1
            batch.append(
                kinesis_event_record(
                    shard_id=_SHARD_ID,
                    sequence_number=f"{self._sequence:056d}",
                    partition_key=partition_key,
                    data=data,
                    arrival=0.0,
                    stream_arn=self.stream_source.stream_arn,
                    region=self.region,
                    role_arn=f"{function.arn}-role",
                )
            )
        return function.invoke({"Records": batch}) or {}
