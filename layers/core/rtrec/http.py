"""Request parsing shared by the HTTP handlers, with one error type and one error shape.

Every route answers bad input with a 4xx whose body is ``{"message": ..., "errors": [...]}``,
whatever the bytes: bodies that are not UTF-8 (gzip, UTF-16), JSON nested too deeply, integers of
thousands of digits, NaN and Infinity, lone surrogates, wrong content types, oversized values.
Parsing here is pure (no Powertools, no boto3); ``install_error_handlers`` maps the errors onto a
Powertools resolver.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from rtrec.events import InvalidEvent, check_text, loads_strict, validate_user_id

JSON_CONTENT_TYPE = "application/json"
# Personalised answers must never be stored by a shared cache (a CDN, a corporate proxy).
NO_STORE = {"Cache-Control": "no-store"}


class RequestError(Exception):
    """A request the API refuses: the status, a message for people, and the details (``where: what``)."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors or [])
        self.headers = dict(headers or {})


def error_body(status: int, message: str | dict[Any, Any], errors: list[str] | None = None) -> str:
    """The one error shape of the API, serialised (Powertools' ServiceError may carry a dict message)."""
    return json.dumps({"message": message, "errors": list(errors or [])}, separators=(",", ":"))


def claims_of(event: Any) -> Mapping[str, Any] | None:
    """The JWT claims API Gateway's authorizer put on a Powertools HTTP API event, if any."""
    authorizer = (event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") if isinstance(authorizer, dict) else None
    return claims if isinstance(claims, Mapping) else None


def caller_id(claims: Mapping[str, Any] | None) -> str:
    """The user: the token's ``sub``, under the rules ingest applies to every user id.

    A missing subject is a 401; one the service cannot use as a user id (too long, control
    characters) a 403 that says why, never a 202 whose events all fail later.
    """
    sub = claims.get("sub") if isinstance(claims, Mapping) else None
    if not isinstance(sub, str) or not sub:
        raise RequestError(401, "a valid token with a 'sub' claim is required")
    try:
        return validate_user_id(sub)
    except InvalidEvent as error:
        raise RequestError(
            403, "the token's subject cannot be used as a user id", [f"token.sub: {error}"]
        ) from None


def too_many(wait_s: float) -> None:
    """Refuse with 429 when a per-user limit says to wait ``wait_s`` seconds (0 = allowed)."""
    if wait_s > 0:
        raise RequestError(
            429,
            "too many requests from this user; retry after the time in Retry-After",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value or ""
    return ""


def body_bytes(body: str | None, is_base64_encoded: bool | None, max_bytes: int) -> bytes:
    """The raw body; API Gateway base64-encodes bodies it does not consider text."""
    if not body:
        return b""
    if is_base64_encoded:
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:
            raise RequestError(413, f"the body is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "the body is not valid base64") from None
    else:
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(400, "the body is not valid UTF-8") from None
    if len(raw) > max_bytes:
        raise RequestError(413, f"the body is {len(raw)} bytes; the limit is {max_bytes}")
    return raw


def json_body(
    headers: Mapping[str, str] | None,
    body: str | None,
    is_base64_encoded: bool | None,
    max_bytes: int,
    example: str,
) -> Any:
    """The request's JSON body: declared as JSON (or undeclared), UTF-8, at most ``max_bytes``."""
    content_type = _header(headers, "content-type").strip().lower()
    media_type, _, parameters = content_type.partition(";")
    if content_type and media_type.strip() != JSON_CONTENT_TYPE:
        raise RequestError(415, f"the body must be JSON (content-type: {JSON_CONTENT_TYPE})")
    charset = parameters.strip().removeprefix("charset=").strip('"') if "charset=" in parameters else "utf-8"
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, "the body must be UTF-8 JSON", [f"header.content-type: charset {charset!r}"])
    encoding = _header(headers, "content-encoding").strip().lower()
    if encoding and encoding != "identity":
        raise RequestError(415, f"content-encoding {encoding!r} is not accepted; send plain JSON")
    raw = body_bytes(body, is_base64_encoded, max_bytes)
    if not raw:
        raise RequestError(400, "invalid request", [f"body: required, {example}"])
    try:
        return loads_strict(raw)
    except InvalidEvent as error:
        raise RequestError(400, "invalid request", [f"body: {error}"]) from None


def query(
    parameters: Mapping[str, str] | None, allowed: set[str], max_length: Mapping[str, int]
) -> dict[str, str]:
    """The query parameters, when every name is ``allowed`` and every value within its length."""
    values = dict(parameters or {})
    unknown = sorted(set(values) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise RequestError(
            400,
            "invalid request",
            [f"query.{_shown(name)}: unknown parameter (accepted: {accepted})" for name in unknown[:10]],
        )
    errors = []
    for name, value in values.items():
        limit = max_length.get(name, 0)
        if len(value) > limit:
            errors.append(f"query.{name}: at most {limit} characters, got {len(value)}")
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            errors.append(f"query.{name}: not valid Unicode")
    if errors:
        raise RequestError(400, "invalid request", errors)
    return values


def id_list(name: str, raw: str | None, max_length: int) -> list[str]:
    """A comma-separated list of ids, each piece at most ``max_length`` characters.

    Blank pieces are skipped; the rest must be identifiers (no control characters). The parameter's
    length bounds how many there are. The OpenAPI document states the same rule as a pattern
    (``id_list_pattern``), so both agree on every value.
    """
    if raw is None:
        return []
    pieces = raw.split(",")
    errors = []
    values = []
    for piece in pieces:
        if len(piece) > max_length:
            errors.append(f"query.{name}: values are at most {max_length} characters")
            continue
        if not piece.strip():
            continue
        try:
            values.append(check_text(piece.strip(), f"query.{name} entry", max_length))
        except InvalidEvent as error:
            errors.append(str(error))
    if errors:
        raise RequestError(400, "invalid request", errors[:10])
    return values


def id_list_pattern(max_length: int) -> str:
    """The regular expression of what ``id_list`` accepts, for the OpenAPI document."""
    piece = f"[^,\\x00-\\x1f\\x7f]{{0,{max_length}}}"
    return f"^{piece}(,{piece})*$"


def _shown(name: str) -> str:
    return name[:40].encode("utf-8", "replace").decode("utf-8")


def install_error_handlers(app: Any, logger: Any) -> None:
    """Answer every error of a Powertools resolver in the one shape, with the right status.

    Powertools' own errors (its 404 for an unknown route, a ServiceError raised anywhere) and any
    unexpected exception are mapped too, so no answer of the API has another shape.
    """
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.exceptions import ServiceError

    def respond(
        status: int, message: str | dict[Any, Any], errors: list[str] | None = None, **headers: str
    ) -> Response[str]:
        return Response(
            status_code=status,
            content_type=JSON_CONTENT_TYPE,
            body=error_body(status, message, errors),
            headers={**NO_STORE, **headers},
        )

    def _request_error(error: RequestError) -> Response[str]:
        return respond(error.status, error.message, error.errors, **error.headers)

    def _service_error(error: ServiceError) -> Response[str]:
        return respond(error.status_code, error.msg)

    def _not_found(_: Exception) -> Response[str]:
        return respond(404, "no such route")

    def _unexpected(error: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return respond(500, "internal error")

    # Registered by calling the resolver's decorators: Powertools leaves them unannotated, and as
    # decorators they would make these handlers untyped.
    app.exception_handler(RequestError)(_request_error)
    app.exception_handler(ServiceError)(_service_error)
    app.not_found(_not_found)
    app.exception_handler(Exception)(_unexpected)
