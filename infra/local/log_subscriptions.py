"""CloudWatch Logs subscriptions to Lambda, emulated: a function's matching log lines go to another function.

moto keeps no log lines from functions run here, so the template's ``CloudWatchLogs`` event sources
(``LogGroupName`` naming a function's ``LoggingConfig.LogGroup``, a JSON ``FilterPattern`` of the
form ``{ $.field = "value" }``) are served by watching the functions' log output: every function
shares the Powertools logger of the service, so its handler's stream is wrapped, and a JSON line
whose ``function_name`` is the source function's and that matches the pattern is queued. ``flush``
delivers the queue to the subscribed function as Lambda would (``{"awslogs": {"data":
base64(gzip(JSON))}}``, the DATA_MESSAGE shape), retrying a failed invocation twice as asynchronous
invocations are; ``start`` does that every ``interval_s`` in a thread (the local stack), while the
in-process harness flushes when it wants the lines delivered.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.local.runtime import LocalFunction

log = logging.getLogger(__name__)

_JSON_EQUALS = re.compile(r'\{\s*\$\.(?P<field>[A-Za-z0-9_]+)\s*=\s*"(?P<value>[^"]*)"\s*\}')
ASYNC_ATTEMPTS = 3  # Lambda retries a failed asynchronous invocation twice by default


def awslogs_event(
    lines: Sequence[str],
    log_group: str = "/aws/lambda/local",
    log_stream: str = "local",
    filter_name: str = "local",
    start_ms: int | None = None,
) -> dict[str, Any]:
    """The event a Lambda subscribed to a log group receives for ``lines``."""
    start_ms = int(time.time() * 1000) if start_ms is None else start_ms
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": [filter_name],
        "logEvents": [
            {"id": f"{start_ms}{n:010d}", "timestamp": start_ms, "message": line}
            for n, line in enumerate(lines)
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}


@dataclass
class Subscription:
    """One CloudWatchLogs event source of the template: source function, filter, subscribed function."""

    name: str
    source: LocalFunction
    target: LocalFunction
    log_group: str
    field_name: str
    value: str
    pending: list[str] = field(default_factory=list)

    def matches(self, line: Mapping[str, Any]) -> bool:
        return line.get("function_name") == self.source.name and str(line.get(self.field_name)) == self.value


def subscriptions_of(
    document: Mapping[str, Any], functions: Mapping[str, LocalFunction]
) -> list[Subscription]:
    """The template's CloudWatchLogs events whose log group is one of ``functions``' own log group."""
    resources = document.get("Resources") or {}
    by_log_group = {
        _key(((resource.get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup")): fid
        for fid, resource in resources.items()
        if fid in functions
    }
    found = []
    for target_id, resource in resources.items():
        if target_id not in functions:
            continue
        for name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") != "CloudWatchLogs":
                continue
            properties = event.get("Properties") or {}
            source_id = by_log_group.get(_key(properties.get("LogGroupName")))
            pattern = _JSON_EQUALS.fullmatch(str(properties.get("FilterPattern") or "").strip())
            if source_id is None or pattern is None:
                log.warning("log subscription %s.%s is not emulated locally", target_id, name)
                continue
            found.append(
                Subscription(
                    name=f"{target_id}.{name}",
                    source=functions[source_id],
                    target=functions[target_id],
                    log_group=f"/aws/lambda/{functions[source_id].name}",
                    field_name=pattern["field"],
                    value=pattern["value"],
                )
            )
    return found


def _key(reference: Any) -> str:
    """A log group reference (``{"Ref": ...}``, a name) as a comparable key."""
    return json.dumps(reference, sort_keys=True)


class _Tee:
    """A log stream that hands every line to ``on_line`` and, with ``passthrough``, writes it on."""

    def __init__(self, target: Any, on_line: Any, passthrough: bool = True) -> None:
        self.target = target
        self.on_line = on_line
        self.passthrough = passthrough

    def write(self, text: str) -> int:
        self.on_line(text)
        return int(self.target.write(text) or 0) if self.passthrough else len(text)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class LogSubscriptions:
    """The template's log subscriptions between the loaded functions; ``install`` starts watching."""

    def __init__(self, document: Mapping[str, Any], functions: Mapping[str, LocalFunction]) -> None:
        self.subscriptions = subscriptions_of(document, functions)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wrapped: list[tuple[logging.StreamHandler[Any], Any]] = []

    def install(self, logger_names: Sequence[str] = ("rtrec",), passthrough: bool = True) -> LogSubscriptions:
        """Wrap the stream of the functions' Powertools logger (service ``rtrec``) once.

        ``passthrough=False`` keeps the lines off the console (an evaluation's thousands of answers).
        """
        if not self.subscriptions:
            return self
        for name in logger_names:
            for handler in logging.getLogger(name).handlers:
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, _Tee):
                    self._wrapped.append((handler, handler.stream))
                    handler.setStream(_Tee(handler.stream, self._observe, passthrough))
        return self

    def _observe(self, text: str) -> None:
        if '"function_name"' not in text:
            return
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            for subscription in self.subscriptions:
                if subscription.matches(line):
                    with self._lock:
                        subscription.pending.append(raw)

    def flush(self) -> int:
        """Deliver every queued line to its subscribed function; returns how many were delivered."""
        delivered = 0
        for subscription in self.subscriptions:
            with self._lock:
                lines, subscription.pending = subscription.pending, []
            if not lines:
                continue
            event = awslogs_event(lines, subscription.log_group, filter_name=subscription.name)
            for attempt in range(ASYNC_ATTEMPTS):
                try:
                    subscription.target.invoke(event)
                    delivered += len(lines)
                    break
                except Exception:
                    log.exception("%s: delivery failed (attempt %d)", subscription.name, attempt + 1)
        return delivered

    def start(self, interval_s: float = 0.5) -> LogSubscriptions:
        """Deliver in a thread every ``interval_s`` (CloudWatch Logs batches for about that long)."""
        if self.subscriptions and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(interval_s,), daemon=True, name="log-subscriptions"
            )
            self._thread.start()
        return self

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.flush()
            except Exception:
                log.exception("log subscription delivery failed")

    def stop(self) -> None:
        """Stop the thread (after a last delivery) and unwrap the streams."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            self.flush()
        for handler, stream in self._wrapped:
            handler.setStream(stream)
        self._wrapped.clear()
