"""The console's own defences, without a platform: the session cookie's attributes, the CSRF
check on every form, the Content-Security-Policy and its companions on every answer, and the
login's state and PKCE."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from console.main import create_app
from console.platform import Platform
from console.sessions import COOKIE, SessionStore, User, csrf_holds
from console.settings import ConsoleSettings

SETTINGS = ConsoleSettings(
    public_url="https://console.test",
    jwt_issuer="https://identity.test",
    fhir_base="https://gateway.test/fhir/R4",
    audit_url="http://127.0.0.1:1",  # nothing listens: no test reaches the platform
    consent_url="http://127.0.0.1:1",
)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), base_url="https://console.test") as client:
        yield client


def logged_in_citizen(client: TestClient) -> str:
    """A session as after a login (the platform part is tested end to end in tests/e2e)."""
    app = client.app
    sessions: SessionStore = app.state.sessions  # type: ignore[attr-defined]
    session = sessions.new()
    session.user = User(subject="00000000000", kind="citizen")
    # tokens as a login leaves them (never sent anywhere: nothing listens at the APIs here)
    session.tokens = {aud: ("token", time.time() + 300) for aud in ("audit", "consent")}
    client.cookies.set(COOKIE, session.id, domain="console.test")
    return session.csrf


def test_every_answer_has_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/", "/static/console.css", "/no-such-page"):
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["strict-transport-security"].startswith("max-age=")


def test_pages_are_never_cached_static_assets_may_be(client: TestClient) -> None:
    assert client.get("/").headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/static/htmx.min.js").headers.get("cache-control", "")


def test_no_page_holds_an_inline_script_or_style(client: TestClient) -> None:
    page = client.get("/").text
    assert "<script>" not in page and "<script " in page  # only external ones
    assert all('src="/static/' in tag for tag in page.split("<script ")[1:])
    assert "style=" not in page and "<style" not in page


def test_the_login_sets_a_host_only_secure_httponly_lax_cookie_and_asks_for_pkce(
    client: TestClient,
) -> None:
    answer = client.get("/login", follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "samesite=lax" in cookie.lower() and "domain" not in attributes
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://identity.test/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == "https://console.test/callback"
    assert query["aud"] == SETTINGS.fhir_base and len(query["state"]) >= 32
    assert "offline_access" in query["scope"].split()


def test_a_callback_with_another_state_is_refused_and_logs_nobody_in(client: TestClient) -> None:
    client.get("/login", follow_redirects=False)
    answer = client.get("/callback?code=abc&state=not-the-one", follow_redirects=False)
    assert answer.status_code == 400
    assert client.get("/citizen/access-log", follow_redirects=False).headers["location"] == (
        "/login"
    )


def test_a_callback_without_a_login_started_here_is_refused(client: TestClient) -> None:
    answer = client.get("/callback?code=abc&state=xyz", follow_redirects=False)
    assert answer.status_code == 400


def test_a_form_without_the_sessions_csrf_token_is_refused(client: TestClient) -> None:
    csrf = logged_in_citizen(client)
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body in ("target=practitioner&number=123", "csrf=forged&target=practitioner&number=1"):
        refused = client.post("/citizen/directives", content=body, headers=form)
        assert refused.status_code == 403
    # the right token passes the check (and reaches the platform, which is not there: 503)
    passed = client.post(
        "/citizen/directives", content=f"csrf={csrf}&target=practitioner&number=123",
        headers=form, follow_redirects=False,
    )  # fmt: skip
    assert passed.status_code == 503
    # htmx's header counts as the form's field
    header = client.post(
        "/citizen/directives/some-id/withdraw", content="",
        headers={**form, "x-csrf-token": csrf}, follow_redirects=False,
    )  # fmt: skip
    assert header.status_code == 503


def test_a_bad_form_is_a_400_page_never_a_500(client: TestClient) -> None:
    csrf = logged_in_citizen(client)
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body in (
        f"csrf={csrf}&target=nobody&number=1",
        f"csrf={csrf}&target=unit&number=12",  # an organisation number has 9 digits
        f"csrf={csrf}&csrf={csrf}&target=unit&number=123456789",  # repeated field
    ):
        answer = client.post("/citizen/directives", content=body, headers=form)
        assert answer.status_code == 400, body
        assert answer.headers["content-type"].startswith("text/html")
    json_body = client.post("/citizen/directives", json={"csrf": csrf})
    assert json_body.status_code == 400


def test_logout_needs_the_csrf_token_and_drops_the_session(client: TestClient) -> None:
    csrf = logged_in_citizen(client)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post("/logout", content="csrf=forged", headers=form).status_code == 403
    answer = client.post("/logout", content=f"csrf={csrf}", headers=form, follow_redirects=False)
    assert answer.status_code == 303 and f"{COOKIE}=" in answer.headers["set-cookie"]
    sessions: SessionStore = client.app.state.sessions  # type: ignore[attr-defined]
    assert len(sessions) == 0


def test_a_users_pages_are_only_theirs(client: TestClient) -> None:
    logged_in_citizen(client)
    assert client.get("/auditor/search").status_code == 403


def test_the_csrf_comparison_needs_the_exact_token() -> None:
    session = SessionStore(ttl_seconds=60, max_sessions=10).new()
    assert csrf_holds(session, session.csrf)
    assert not csrf_holds(session, None) and not csrf_holds(session, "")
    assert not csrf_holds(session, session.csrf[:-1])


def test_a_login_rotates_the_session_id_and_csrf_token() -> None:
    store = SessionStore(ttl_seconds=60, max_sessions=10)
    session = store.new()
    before, csrf = session.id, session.csrf
    store.rotate(session)
    assert session.id != before and session.csrf != csrf
    assert store.get(before) is None and store.get(session.id) is session


def test_the_authorize_url_binds_the_login_to_this_session() -> None:
    session = SessionStore(ttl_seconds=60, max_sessions=10).new()
    url = Platform(SETTINGS, None).authorize_url(session)  # type: ignore[arg-type]
    assert session.pending is not None
    assert parse_qs(urlsplit(url).query)["state"] == [session.pending.state]
