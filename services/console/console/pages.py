"""The console's pages: thin routes over :class:`~console.platform.Platform`.

Auditor pages (role ``auditor``): the decision log's search with a per-day chart and a timeline,
the CSV export of that view, the emergency review queue with its form, gaps and snooping
signals, chain verification. Citizen pages: my access log, my blocks and consents (register and
withdraw a block: the policy lets a citizen write their own ``Consent`` directives).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from console import chart
from console.i18n import LANGUAGES, choose, has_text, translate
from console.platform import AUDIT, CONSENT, LoginFailed, LoginRequired, Platform
from console.sessions import CSRF_FIELD, CSRF_HEADER, Session, SessionStore, require_csrf
from console.settings import ConsoleSettings

router = APIRouter()
environment = Environment(
    loader=PackageLoader("console", "templates"), autoescape=select_autoescape(["html"])
)
templates = Jinja2Templates(env=environment)
STATIC = Path(__file__).parent / "static"
NATIONAL_ID = re.compile(r"^\d{11}$")
HPR = re.compile(r"^\d{1,9}$")
ORG_NUMBER = re.compile(r"^\d{9}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REVIEW_ID = re.compile(r"^[A-Za-z0-9._:-]{1,120}$")
DIRECTIVE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,120}$")
SEARCH_LIMIT = 200
MAX_FORM_BYTES = 8192


class BadInput(Exception):
    """The console's own form or query is not valid: 400 with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- dependencies --------------------------------------------------------------------------


def sessions_of(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def settings_of(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.settings
    return settings


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def current_session(request: Request) -> Session | None:
    cookie = request.app.state.cookie
    return sessions_of(request).get(request.cookies.get(cookie))


def logged_in(request: Request) -> Session:
    session = current_session(request)
    if session is None or session.user is None:
        raise LoginRequired()
    return session


def auditor(session: Annotated[Session, Depends(logged_in)]) -> Session:
    assert session.user is not None
    if not session.user.auditor:
        raise NotForThisUser()
    return session


def citizen(session: Annotated[Session, Depends(logged_in)]) -> Session:
    assert session.user is not None
    if not session.user.citizen:
        raise NotForThisUser()
    return session


class NotForThisUser(Exception):
    """A page of the other kind of user (an auditor's for a citizen, or the reverse)."""


AuditorSession = Annotated[Session, Depends(auditor)]
CitizenSession = Annotated[Session, Depends(citizen)]
PlatformDep = Annotated[Platform, Depends(platform_of)]


# -- rendering -----------------------------------------------------------------------------


def language(request: Request, session: Session | None) -> str:
    asked = request.query_params.get("lang")
    if session is not None and asked in LANGUAGES:
        session.lang = asked
    chosen = asked if asked in LANGUAGES else (session.lang if session else None)
    return choose(chosen, request.headers.get("accept-language"))


def render(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status_code: int = 200,
    lang: str | None = None,
    **values: Any,
) -> HTMLResponse:
    chosen = lang or language(request, session)
    flash = None
    if session is not None:
        flash, session.flash = session.flash, None
    t: Callable[..., str] = partial(translate, chosen)

    def label(kind: str, code: str | None) -> str:
        """The text for a code (``basis``, ``category``, ``profession``...), else the code."""
        return "" if not code else t(f"{kind}_{code}") if has_text("en", f"{kind}_{code}") else code

    context = {
        "lang": chosen,
        "t": t,
        "label": label,
        "user": session.user if session else None,
        "csrf": session.csrf if session else "",
        "csrf_field": CSRF_FIELD,
        "flash": flash,
        "path": request.url.path,
        "languages": LANGUAGES,
        **values,
    }
    return templates.TemplateResponse(request, template, context, status_code=status_code)


async def form_of(request: Request, session: Session) -> dict[str, str]:
    """A url-encoded form, each field once, checked against the session's CSRF token (the
    form's ``csrf`` field or htmx's ``X-CSRF-Token`` header)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise BadInput("a form is sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadInput("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:
        raise BadInput("the form has too many fields") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise BadInput("a form field is repeated")
    form = dict(pairs)
    require_csrf(session, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    return form


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login ---------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    session = current_session(request)
    if session is not None and session.user is not None:
        if session.user.auditor:
            return see_other("/auditor/search")
        if session.user.citizen:
            return see_other("/citizen/access-log")
        return render(request, "no_pages.html", session, status_code=403)
    return render(request, "home.html", session)


@router.get("/login")
async def login(request: Request, platform: PlatformDep) -> Response:
    store = sessions_of(request)
    session = current_session(request) or store.new()
    target = platform.authorize_url(session)
    answer = see_other(target)
    set_session_cookie(request, answer, session)
    return answer


@router.get("/callback")
async def callback(request: Request, platform: PlatformDep) -> Response:
    session = current_session(request)
    if session is None:
        raise LoginFailed("no login was started from this browser")
    query = {k: v for k, v in request.query_params.items() if len(v) <= 4096}
    await platform.logged_in(session, query)
    sessions_of(request).rotate(session)
    answer = see_other("/")
    set_session_cookie(request, answer, session)
    return answer


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = current_session(request)
    if session is not None:
        await form_of(request, session)
        sessions_of(request).drop(session)
    answer = see_other("/")
    answer.delete_cookie(
        request.app.state.cookie,
        path="/",
        secure=settings_of(request).cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return answer


def set_session_cookie(request: Request, answer: Response, session: Session) -> None:
    settings = settings_of(request)
    answer.set_cookie(
        request.app.state.cookie,
        session.id,
        max_age=settings.session_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


# -- auditor: search, export -----------------------------------------------------------------


def search_filters(query: Mapping[str, str]) -> dict[str, str]:
    """audit's query parameters for the console's search form (validated here: a bad value
    is the console's 400, never a 500 or a pass-through)."""
    filters: dict[str, str] = {}
    checks = (
        ("patient", NATIONAL_ID, "the patient is an 11-digit national id"),
        ("practitioner", HPR, "the practitioner is an HPR number (up to 9 digits)"),
        ("organisation", ORG_NUMBER, "the organisation is a 9-digit organisation number"),
    )
    for name, pattern, reason in checks:
        value = query.get(name, "").strip()
        if value:
            if not pattern.match(value):
                raise BadInput(reason)
            filters[name] = value
    for name, api_name, shift in (("from", "from", 0), ("to", "to", 1)):
        value = query.get(name, "").strip()
        if value:
            if not DAY.match(value):
                raise BadInput(f"'{name}' is a date (YYYY-MM-DD)")
            try:
                day = date.fromisoformat(value) + timedelta(days=shift)
            except ValueError:
                raise BadInput(f"'{name}' is not a date") from None
            filters[api_name] = datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
    outcome = query.get("outcome", "")
    if outcome:
        if outcome not in ("allow", "deny"):
            raise BadInput("the outcome is allow or deny")
        filters["outcome"] = outcome
    if query.get("emergency") == "true":
        filters["emergency"] = "true"
    return filters


@router.get("/auditor/search", response_class=HTMLResponse)
async def search(request: Request, session: AuditorSession, platform: PlatformDep) -> Response:
    query = dict(request.query_params)
    try:
        filters = search_filters(query)
    except BadInput as bad:
        return render(
            request, "auditor/search.html", session, lang="en", status_code=400,
            form=query, problem=bad.reason, decisions=None, chart=None, export=None,
        )  # fmt: skip
    page = await platform.call(
        session,
        AUDIT,
        "GET",
        "/audit/decisions",
        params={**filters, "_count": str(SEARCH_LIMIT)},
    )
    decisions = page["items"]
    days = chart.per_day(decisions)
    return render(
        request,
        "auditor/search.html",
        session,
        lang="en",
        form=query,
        problem=None,
        decisions=decisions,
        more=page.get("next") is not None,
        days=days,
        chart=chart.draw(days) if days else None,
        outcome=chart.outcome,
        export="/auditor/export?"
        + urlencode({k: v for k, v in query.items() if k in SEARCH_FIELDS and v}),
        limit=SEARCH_LIMIT,
    )


SEARCH_FIELDS = ("patient", "practitioner", "organisation", "from", "to", "outcome", "emergency")


@router.get("/auditor/export")
async def export(request: Request, session: AuditorSession, platform: PlatformDep) -> Response:
    filters = search_filters(dict(request.query_params))
    chunks = await platform.stream(
        session, AUDIT, "/audit/decisions/export", {**filters, "format": "csv"}
    )
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="decisions.csv"'},
    )


# -- auditor: reviews, findings, chain -------------------------------------------------------


@router.get("/auditor/reviews", response_class=HTMLResponse)
async def reviews(request: Request, session: AuditorSession, platform: PlatformDep) -> Response:
    waiting = await platform.call(
        session, AUDIT, "GET", "/audit/reviews", params={"status": "open"}
    )
    done = await platform.call(
        session, AUDIT, "GET", "/audit/reviews", params={"status": "closed", "_count": "20"}
    )
    return render(
        request, "auditor/reviews.html", session, lang="en",
        waiting=waiting["items"], done=done["items"],
    )  # fmt: skip


@router.post("/auditor/reviews/{review_id}")
async def record_review(
    review_id: str, request: Request, session: AuditorSession, platform: PlatformDep
) -> Response:
    form = await form_of(request, session)
    if not REVIEW_ID.match(review_id):
        raise BadInput("no such review")
    outcome = form.get("outcome", "")
    comment = form.get("comment", "").strip()
    if outcome not in ("justified", "not_justified"):
        raise BadInput("choose a verdict: justified or not justified")
    if not 1 <= len(comment) <= 2000:
        raise BadInput("a comment (1-2000 characters) is required")
    await platform.call(
        session,
        AUDIT,
        "POST",
        f"/audit/reviews/{review_id}",
        json={"outcome": outcome, "comment": comment},
    )
    session.flash = "review_recorded"
    return see_other("/auditor/reviews")


@router.get("/auditor/findings", response_class=HTMLResponse)
async def findings(request: Request, session: AuditorSession, platform: PlatformDep) -> Response:
    gaps = await platform.call(session, AUDIT, "GET", "/audit/gaps", params={"status": "open"})
    signals = await platform.call(session, AUDIT, "GET", "/audit/signals")
    return render(
        request, "auditor/findings.html", session, lang="en",
        gaps=gaps["items"], signals=signals,
    )  # fmt: skip


@router.get("/auditor/chain", response_class=HTMLResponse)
async def chain_status(
    request: Request, session: AuditorSession, platform: PlatformDep
) -> Response:
    report = await platform.call(session, AUDIT, "GET", "/audit/chain/verify")
    return render(request, "auditor/chain.html", session, lang="en", report=report)


# -- citizen ---------------------------------------------------------------------------------


@router.get("/citizen/access-log", response_class=HTMLResponse)
async def access_log(request: Request, session: CitizenSession, platform: PlatformDep) -> Response:
    page = await platform.call(session, AUDIT, "GET", "/audit/access-log", params={"_count": "100"})
    return render(request, "citizen/access_log.html", session, accesses=page["items"])


@router.get("/citizen/directives", response_class=HTMLResponse)
async def directives(request: Request, session: CitizenSession, platform: PlatformDep) -> Response:
    assert session.user is not None
    listed = await platform.call(
        session, CONSENT, "GET", "/directives", params={"patient": session.user.subject}
    )
    return render(
        request, "citizen/directives.html", session,
        directives=list(reversed(listed["items"])), today=date.today().isoformat(),
    )  # fmt: skip


BLOCK_TARGETS = ("practitioner", "unit", "organisation")


@router.post("/citizen/directives")
async def register_block(
    request: Request, session: CitizenSession, platform: PlatformDep
) -> Response:
    assert session.user is not None
    form = await form_of(request, session)
    target, number = form.get("target", ""), form.get("number", "").strip()
    if target not in BLOCK_TARGETS:
        raise BadInput("choose whom to block")
    if not (HPR if target == "practitioner" else ORG_NUMBER).match(number):
        raise BadInput("the number is not an HPR number or organisation number")
    block = {
        "kind": "block",
        "patient": session.user.subject,
        target: number,
        "period_start": date.today().isoformat(),
    }
    await platform.call(session, CONSENT, "POST", "/directives", json=block)
    session.flash = "block_registered"
    return see_other("/citizen/directives")


@router.post("/citizen/directives/{directive_id}/withdraw")
async def withdraw(
    directive_id: str, request: Request, session: CitizenSession, platform: PlatformDep
) -> Response:
    await form_of(request, session)
    if not DIRECTIVE_ID.match(directive_id):
        raise BadInput("no such directive")
    await platform.call(session, CONSENT, "POST", f"/directives/{directive_id}/withdraw")
    session.flash = "block_withdrawn"
    return see_other("/citizen/directives")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz() -> dict[str, str]:
    """Ready as soon as it runs: no database, no sidecar; the platform's APIs answer for
    themselves (a page the platform cannot serve says so)."""
    return {"status": "ready"}
