"""The local-only page routes (infra/local/web.py) on the local HTTP API, without a browser."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.auth import LocalIdentityProvider
from infra.local.http_api import LocalHttpApi
from infra.local.web import DEFAULT_WEB_DIR, LocalWebPage, cached_movielens_titles


@pytest.fixture(scope="module")
def identity() -> LocalIdentityProvider:
    return LocalIdentityProvider("https://issuer.local", ["local-client"])


@pytest.fixture(scope="module")
def api(identity: LocalIdentityProvider) -> Iterator[str]:
    page = LocalWebPage(
        lambda user, ttl_s: identity.mint(user, ttl_s=ttl_s),
        DEFAULT_WEB_DIR,
        titles=lambda: {"50": "A title"},
    )
    server = LocalHttpApi([], {}, port=0, pages=page.handle)
    server.start()
    yield server.url
    server.stop()


def fetch(url: str, method: str = "GET", body: object = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_page_and_its_files_come_from_web_with_a_same_origin_policy(api: str) -> None:
    status, headers, body = fetch(f"{api}/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert body == (DEFAULT_WEB_DIR / "index.html").read_bytes()
    status, headers, body = fetch(f"{api}/app.js")
    assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
    assert body == (DEFAULT_WEB_DIR / "app.js").read_bytes()
    assert fetch(f"{api}/style.css")[1]["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path", ["/missing.js", "/../README.md", "/%2e%2e/README.md", "/web/index.html", "/v1/x"]
)
def test_other_paths_are_left_to_the_api(api: str, path: str) -> None:
    status, _, body = fetch(api + path)
    assert status == 404
    assert json.loads(body) == {"message": "Not Found"}  # the API's own answer, not the page's


def test_a_demo_user_gets_a_token_the_authorizer_accepts(api: str, identity: LocalIdentityProvider) -> None:
    status, headers, body = fetch(f"{api}/local/token", "POST", {"user": "demo-alice"})
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    answer = json.loads(body)
    assert (answer["user"], answer["expires_in"]) == ("demo-alice", 3600)
    claims = identity.verify(answer["token"])
    assert (claims["sub"], claims["token_use"], claims["exp"] - claims["iat"]) == (
        "demo-alice",
        "access",
        3600,
    )


@pytest.mark.parametrize("body", [{"user": "alice"}, {"user": "demo-"}, {"user": 7}, {}, ["demo-a"], "x"])
def test_only_demo_users_get_a_token(api: str, body: object) -> None:
    status, _, answer = fetch(f"{api}/local/token", "POST", body)
    assert status == 400
    assert json.loads(answer)["errors"] == ["body.user: demo-<letters, digits, _ or ->"]


def test_the_token_endpoint_takes_only_post(api: str) -> None:
    assert fetch(f"{api}/local/token")[0] == 405


def test_titles_are_served_as_given(api: str) -> None:
    status, _, body = fetch(f"{api}/local/titles")
    assert (status, json.loads(body)) == (200, {"50": "A title"})


def test_no_titles_for_a_model_trained_on_other_data(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text(
        json.dumps({"data": {"source": "ecommerce", "wheel_sha256": None}})
    )
    assert cached_movielens_titles(tmp_path) == {}
    assert cached_movielens_titles(tmp_path / "missing") == {}
