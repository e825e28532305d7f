"""The demo web page (`web/`) and its two local-only helpers, served by the local stack next to the API.

Nothing here exists in AWS: the template deploys no page and no token endpoint. A real client signs in
with Cognito and calls the same `/v1/...` routes (README, "A web page"). Locally the page is served from
the API's own origin, so its requests need no CORS, and it gets a token from `POST /local/token`, which
mints one for a demo user the way `python -m infra.local.token` does.

- `GET /` and `GET /<file>`: the files directly in `web/` (HTML, JS, CSS; no build step, nothing from a CDN).
- `POST /local/token` `{"user": "demo-..."}`: `{"user", "token", "expires_in"}`; only `demo-` users.
- `GET /local/titles`: `{item_id: title}` for the shipped MovieLens model when the dataset wheel is
  already in `.cache/data` (read now, never written anywhere, never downloaded here); `{}` otherwise,
  and the page shows item ids.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from dataio import movielens

log = logging.getLogger("local.web")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEB_DIR = REPO_ROOT / "web"
DEFAULT_MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
TOKEN_PATH = "/local/token"
TITLES_PATH = "/local/titles"
TOKEN_TTL_S = 3600
DEMO_USER = re.compile(r"^demo-[A-Za-z0-9_-]{1,40}$")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_FILE_NAME = re.compile(r"^/([A-Za-z0-9_-]+\.[a-z]+)$")
# Only this origin: a script, style or request to anywhere else (a CDN) is blocked and shows as an error.
_CONTENT_SECURITY_POLICY = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


class LocalWebPage:
    """Answers the page's requests; `handle` returns None for every other path (the API's routes)."""

    def __init__(
        self,
        mint_token: Callable[[str, int], str],
        web_dir: str | Path = DEFAULT_WEB_DIR,
        titles: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """``mint_token(user, ttl_s)``: a token the API's authorizer accepts; ``titles``: item id -> title."""
        self.web_dir = Path(web_dir).resolve()
        self._mint_token = mint_token
        self._load_titles = titles or (lambda: cached_movielens_titles(DEFAULT_MODEL_DIR))
        self._titles: bytes | None = None
        self._titles_lock = threading.Lock()

    def handle(self, request: BaseHTTPRequestHandler, method: str, path: str, body: bytes) -> int | None:
        """Serve the request if it is the page's; the status sent, or None when it is not ours."""
        if path == TOKEN_PATH:
            if method != "POST":
                return _send(request, 405, _json({"message": "use POST"}), "application/json")
            return self._token(request, body)
        if method not in ("GET", "HEAD"):
            return None
        if path == TITLES_PATH:
            return _send(request, 200, self._titles_json(), "application/json", cache="max-age=3600")
        name = "index.html" if path == "/" else (m.group(1) if (m := _FILE_NAME.match(path)) else None)
        if name is None:
            return None
        file = self.web_dir / name
        content_type = _CONTENT_TYPES.get(file.suffix)
        if content_type is None or not file.is_file():
            return None
        # no-cache: an edited page shows on the next reload, no restart of the stack needed
        return _send(request, 200, file.read_bytes(), content_type, cache="no-cache", csp=True)

    def _token(self, request: BaseHTTPRequestHandler, body: bytes) -> int:
        try:
            user = json.loads(body or b"{}").get("user")
        except (ValueError, AttributeError):
            user = None
        if not isinstance(user, str) or not DEMO_USER.match(user):
            message = {"message": "invalid request", "errors": ["body.user: demo-<letters, digits, _ or ->"]}
            return _send(request, 400, _json(message), "application/json")
        token = self._mint_token(user, TOKEN_TTL_S)
        answer = {"user": user, "token": token, "expires_in": TOKEN_TTL_S}
        return _send(request, 200, _json(answer), "application/json", cache="no-store")

    def _titles_json(self) -> bytes:
        with self._titles_lock:
            if self._titles is None:
                self._titles = _json(self._load_titles())
            return self._titles


def cached_movielens_titles(model_dir: Path) -> dict[str, str]:
    """Titles by item id when the model was trained on the MovieLens wheel and that wheel is cached.

    The wheel's checksum must be the one the model's metadata names, so the titles belong to the
    catalog that answers; nothing is downloaded (the page must work offline).
    """
    wheel = movielens.DATA_DIR / movielens.WHEEL_NAME
    try:
        data = json.loads((model_dir / "metadata.json").read_text()).get("data") or {}
    except (OSError, ValueError):
        return {}
    if data.get("wheel_sha256") != movielens.WHEEL_SHA256 or not wheel.is_file():
        return {}
    if movielens.sha256_of(wheel) != movielens.WHEEL_SHA256:
        log.warning("%s does not have the pinned checksum: no titles", wheel)
        return {}
    return movielens.titles_from_wheel(wheel)


def _json(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")


def _send(
    request: BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    content_type: str,
    cache: str = "no-store",
    csp: bool = False,
) -> int:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    if csp:
        request.send_header("Content-Security-Policy", _CONTENT_SECURITY_POLICY)
    request.send_header("Cache-Control", cache)
    request.send_header("X-Content-Type-Options", "nosniff")
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(payload)
    return status
