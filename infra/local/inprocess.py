"""The template's functions called directly in this process, against moto's in-memory AWS.

No servers and no threads: the streaming replay evaluation uses it to push tens of
thousands of events through the real ingest and recommend handlers quickly, with the
same resources, environment and event shapes as the local stack.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moto import mock_aws

from infra.local.aws import PhysicalResources, provision
from infra.local.http_api import build_http_event
from infra.local.runtime import (
    LocalFunction,
    function_environment,
    install_handler_output,
    layer_directories,
    layer_import_paths,
    prepare_process,
    restore_environment,
    uninstall_handler_output,
)
from infra.local.template import ACCOUNT_ID, Template


class InProcessService:
    """Context manager: moto in memory, template resources, handlers imported with their environment."""

    def __init__(
        self,
        template_path: str | Path,
        environment: dict[str, str] | None = None,
        region: str | None = None,
        drop_metric_lines: bool = False,
    ) -> None:
        self.template = Template(template_path)
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.overrides = dict(environment or {})
        self.functions: dict[str, LocalFunction] = {}
        self.physical: PhysicalResources | None = None
        self._mock = mock_aws()
        self._previous: dict[str, str | None] = {}
        self._sequence = 0
        self.drop_metric_lines = drop_metric_lines
        source = next(iter(self.template.kinesis_sources()), None)
        self.stream_function_id = source.function_id if source else None
        self.batch_size = source.batch_size if source else 100

    def __enter__(self) -> InProcessService:
        env = {
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        self._previous = prepare_process([], env)
        self._mock.start()
        self.physical, resolver = provision(self.template, None, self.region)
        function_env: dict[str, str] = {}
        paths = []
        for spec in self.template.functions():
            function_env.update(function_environment(spec, self.template, resolver))
            paths += layer_import_paths(layer_directories(spec, self.template, resolver))
            self.functions[spec.logical_id] = LocalFunction(spec, self.template.root, self.region)
        function_env.update(self.overrides)
        self._previous.update({k: v for k, v in prepare_process(paths, function_env).items() if k not in env})
        install_handler_output(self.drop_metric_lines)
        for function in self.functions.values():
            function.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mock.stop()
        restore_environment(self._previous)
        uninstall_handler_output()

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

    def ingest(self, records: Iterable[tuple[str, bytes]]) -> dict:
        """Invoke the stream function with one Kinesis batch of (partition key, data) records."""
        stream_arn = f"arn:aws:kinesis:{self.region}:{ACCOUNT_ID}:stream/inprocess"
        batch = []
        for partition_key, data in records:
            self._sequence += 1
            sequence = f"{self._sequence:056d}"
            batch.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": partition_key,
                        "sequenceNumber": sequence,
                        "data": base64.b64encode(data).decode("ascii"),
                        "approximateArrivalTimestamp": 0.0,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"shardId-000000000000:{sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT_ID}:role/inprocess",
                    "awsRegion": self.region,
                    "eventSourceARN": stream_arn,
                }
            )
        if self.stream_function_id is None:
            raise RuntimeError("the template has no Kinesis event source")
        return self.functions[self.stream_function_id].invoke({"Records": batch}) or {}
