"""The template's HTTP API on 127.0.0.1: routes, JWT authorizer, payload format 2.0 events."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.auth import InvalidToken, LocalIdentityProvider, bearer_token
from infra.local.runtime import LocalFunction
from infra.local.template import ACCOUNT_ID, HttpRoute

log = logging.getLogger("local.http")

_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

# (request, method, path, body) -> the status it sent, or None to leave the request to the routes.
PageHandler = Callable[[BaseHTTPRequestHandler, str, str, bytes], int | None]


@dataclass
class BoundRoute:
    route: HttpRoute
    function: LocalFunction
    pattern: re.Pattern | None  # None for $default

    @classmethod
    def of(cls, route: HttpRoute, function: LocalFunction) -> BoundRoute:
        if route.path == "$default":
            return cls(route, function, None)
        regex = ""
        for part in re.split(r"(\{[^}]+\})", route.path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return cls(route, function, re.compile(f"^{regex}$"))

    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers exact methods over ANY and literal paths over variables."""
        literal = len(re.sub(r"\{[^}]+\}", "", self.route.path))
        return (0 if self.route.method == "ANY" else 1, literal)


def build_http_event(
    *,
    route_key: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    path_parameters: dict[str, str],
    claims: dict | None,
    source_ip: str,
    api_id: str,
    host: str,
) -> dict:
    """An API Gateway HTTP API (payload format 2.0) event, as the Lambda integration receives it."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        request_context["authorizer"] = {
            # The JWT authorizer hands every claim over as a string.
            "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": _scopes(claims)}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def _claim_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _scopes(claims: dict) -> list[str] | None:
    scope = claims.get("scope")
    return str(scope).split() if scope else None


class LocalHttpApi:
    """Serves the routes on host:port; each request becomes one invocation of the route's function."""

    def __init__(
        self,
        routes: list[BoundRoute],
        authorizers: dict[str, LocalIdentityProvider],
        api_id: str = "local",
        host: str = "127.0.0.1",
        port: int = 0,
        cors: dict | None = None,
        pages: PageHandler | None = None,
    ) -> None:
        """``pages``: local-only paths served before the routes (the demo page, infra/local/web.py)."""
        self.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)
        self.pages = pages
        self.cors = cors
        self.authorizers = authorizers
        self.api_id = api_id
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request is logged by _handle instead

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-api")
        self._thread.start()
        for bound in self.routes:
            log.info(
                "%-32s -> %s%s",
                bound.route.route_key,
                bound.route.function_id,
                f" (authorizer {bound.route.authorizer})" if bound.route.authorizer else " (open)",
            )
        log.info("HTTP API on %s", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()
        log.info("HTTP API stopped")

    def _match(self, method: str, path: str) -> tuple[BoundRoute, dict[str, str]] | None:
        fallback = None
        for bound in self.routes:
            if bound.pattern is None:
                fallback = bound
                continue
            if bound.route.method not in ("ANY", method):
                continue
            match = bound.pattern.match(path)
            if match:
                return bound, match.groupdict()
        return (fallback, {}) if fallback else None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        method = request.command
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self._reply(request, 413, {"message": "Request Entity Too Large"})
            return
        body = request.rfile.read(length) if length else b""
        if self.pages is not None:
            page_status = self.pages(request, method, parts.path, body)
            if page_status is not None:
                log.info("%s %s -> %d (local page)", method, parts.path, page_status)
                return
        if method == "OPTIONS" and self.cors and request.headers.get("Access-Control-Request-Method"):
            status = self._preflight(request)
            log.info("OPTIONS %s -> %d (CORS preflight)", parts.path, status)
            return
        matched = self._match(method, parts.path)
        if matched is None:
            status = self._reply(request, 404, {"message": "Not Found"})
            log.info("%s %s -> %d (no route)", method, parts.path, status)
            return
        bound, path_parameters = matched
        claims = None
        if bound.route.authorizer:
            try:
                claims = self._authorize(bound.route, request)
            except InvalidToken as exc:
                status = self._reply(request, 401, {"message": "Unauthorized"})
                log.info("%s %s -> %d (%s)", method, parts.path, status, exc)
                return
        event = build_http_event(
            route_key=bound.route.route_key,
            method=method,
            raw_path=parts.path,
            raw_query=parts.query,
            headers=list(request.headers.items()),
            body=body,
            path_parameters=path_parameters,
            claims=claims,
            source_ip=request.client_address[0],
            api_id=self.api_id,
            host=request.headers.get("Host", "localhost"),
        )
        try:
            result = bound.function.invoke(event)
            status = self._reply_lambda(request, result)
        except Exception:
            log.exception("%s raised", bound.route.function_id)
            status = self._reply(request, 500, {"message": "Internal Server Error"})
        log.info(
            "%s %s -> %d (%s, %.1f ms)",
            method,
            request.path,
            status,
            bound.route.function_id,
            (time.perf_counter() - started) * 1000,
        )

    def _allowed_origin(self, request: BaseHTTPRequestHandler) -> str | None:
        origin = request.headers.get("Origin")
        allowed = (self.cors or {}).get("AllowOrigins") or []
        return origin if origin and (origin in allowed or "*" in allowed) else None

    def _preflight(self, request: BaseHTTPRequestHandler) -> int:
        """API Gateway answers CORS preflights itself from the API's CorsConfiguration."""
        origin = self._allowed_origin(request)
        if origin is None:
            return self._send(request, 204, b"", {}, [])
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ",".join(self.cors.get("AllowMethods") or ["*"]),
            "Access-Control-Allow-Headers": ",".join(self.cors.get("AllowHeaders") or []),
            "Access-Control-Max-Age": str(self.cors.get("MaxAge", 0)),
            "Vary": "Origin",
        }
        return self._send(request, 204, b"", headers, [])

    def _authorize(self, route: HttpRoute, request: BaseHTTPRequestHandler) -> dict:
        provider = self.authorizers.get(route.authorizer or "")
        if provider is None:
            raise InvalidToken(f"authorizer {route.authorizer} is not configured locally")
        claims = provider.verify(bearer_token(request.headers.get("Authorization")))
        if route.scopes:
            granted = set(_scopes(claims) or [])
            if not granted.intersection(route.scopes):
                raise InvalidToken("no required scope")
        return claims

    def _reply_lambda(self, request: BaseHTTPRequestHandler, result: Any) -> int:
        """Map a payload-2.0 Lambda response onto the HTTP response (API Gateway's rules)."""
        if not (isinstance(result, dict) and "statusCode" in result):
            return self._reply(request, 200, result)
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(str(v) for v in values)
        cookies = result.get("cookies") or []
        return self._send(request, int(result["statusCode"]), payload, headers, cookies)

    def _reply(self, request: BaseHTTPRequestHandler, status: int, body: Any) -> int:
        payload = json.dumps(body).encode("utf-8")
        return self._send(request, status, payload, {"Content-Type": "application/json"}, [])

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict, cookies: list[str]
    ) -> int:
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                request.send_header(name, str(value))
        for cookie in cookies:
            request.send_header("Set-Cookie", cookie)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)
        return status
