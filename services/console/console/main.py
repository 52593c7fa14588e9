"""The console: FastAPI with server-rendered pages, every asset its own (``/static``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from console.i18n import translate
from console.pages import STATIC, BadInput, NotForThisUser, current_session, render, router
from console.platform import LoginFailed, LoginRequired, Platform, Refused, Unavailable
from console.security import SecurityHeaders
from console.sessions import CsrfRefused, SessionStore, cookie_name
from console.settings import ConsoleSettings


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
            app.state.platform = Platform(settings, http)
            yield

    app = FastAPI(
        title="Akson console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.state.sessions = SessionStore(
        ttl_seconds=settings.session_seconds, max_sessions=settings.max_sessions
    )
    app.state.cookie = cookie_name(settings.cookie_secure)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders, hsts=settings.public_url.startswith("https://"))
    install_error_pages(app)
    return app


def install_error_pages(app: FastAPI) -> None:
    def page(request: Request, status: int, title: str, detail: str) -> Response:
        session = current_session(request)
        return render(
            request, "error.html", session, status_code=status, title=title, detail=detail
        )

    async def on_login_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    async def on_login_failed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginFailed)
        return page(request, 400, "error", exc.reason)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        status = exc.status if exc.status in (403, 404, 409, 412, 422) else 400
        title = "refused" if status == 403 else "error"
        return page(request, status, title, exc.detail)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        return page(request, 503, "error", "")

    async def on_csrf(request: Request, exc: Exception) -> Response:
        session = current_session(request)
        return page(
            request, 403, "error", translate(session.lang if session else None, "csrf_refused")
        )

    async def on_bad_input(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadInput)
        return page(request, 400, "bad_request", exc.reason)

    async def on_not_for_user(request: Request, exc: Exception) -> Response:
        return page(request, 403, "refused", "")

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(LoginFailed, on_login_failed)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(Unavailable, on_unavailable)
    app.add_exception_handler(CsrfRefused, on_csrf)
    app.add_exception_handler(BadInput, on_bad_input)
    app.add_exception_handler(NotForThisUser, on_not_for_user)


app = create_app()
