"""The app factory: every service is ``create_service(settings, routers, configure)``.

It wires what all services share: problem+json errors, request and decision ids, JSON logs,
tracing, the database (indexes at start-up), the sidecar client, event publishing and
subscriptions, the outbox relay, token verification and the policy enforcement point, plus
``/healthz`` (alive) and ``/readyz`` (database, sidecar and OPA reachable).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akson_common.auth import Denylist, JwksSource, TokenVerifier
from akson_common.background import Worker
from akson_common.db import Database
from akson_common.enforcement import EnforcementLog
from akson_common.errors import declare_error_responses, install_problem_handlers
from akson_common.events import EVENT_ROUTES, EventPublisher, ServiceEvents, Subscriptions
from akson_common.fhir import install_fhir_outcomes
from akson_common.fhir_rest import FhirRest, strict_parameters
from akson_common.guard import InputGuard
from akson_common.logs import configure_logging
from akson_common.outbox import Outbox
from akson_common.policy import (
    DECISION_HEADER,
    OBLIGATIONS_HEADER,
    PolicyEnforcementPoint,
    decision_ids,
    decision_obligations,
)
from akson_common.settings import ServiceSettings
from akson_common.telemetry import configure_tracing

REQUEST_ID_HEADER = "X-Request-Id"
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class Platform:
    """What the shared library gives a service; reachable as ``app.state.platform``."""

    settings: ServiceSettings
    database: Database
    http: httpx.AsyncClient
    publisher: EventPublisher
    outbox: Outbox
    subscriptions: Subscriptions
    pep: PolicyEnforcementPoint
    # what runs beside the routes (``beside``): started after the service's start-up
    workers: list[Worker] = field(default_factory=list)

    def beside(self, *workers: Worker) -> None:
        """Run ``workers`` beside the routes: started after ``on_startup``, stopped (in
        reverse) before ``on_shutdown``."""
        self.workers.extend(workers)


Startup = Callable[[Platform], Awaitable[None]]


class RequestContextMiddleware:
    """Request id in and out, the ids of the access decisions the request took and the
    obligations of those that allowed (e.g. ``notify_patient`` after an emergency access)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        # a caller's request id is echoed only if it is plain (never text the guard refuses)
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _PLAIN_ID.fullmatch(offered) else uuid.uuid4().hex
        taken: list[str] = []
        owed: set[str] = set()
        token = decision_ids.set(taken)
        owed_token = decision_obligations.set(owed)

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
                if taken:
                    extra.append((DECISION_HEADER.lower().encode(), ",".join(taken).encode()))
                if owed:
                    extra.append(
                        (OBLIGATIONS_HEADER.lower().encode(), ",".join(sorted(owed)).encode())
                    )
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            decision_ids.reset(token)
            decision_obligations.reset(owed_token)


def create_service(
    settings: ServiceSettings,
    *,
    title: str,
    events: ServiceEvents,
    routers: Sequence[APIRouter] = (),
    on_startup: Startup | None = None,
    on_shutdown: Startup | None = None,
    configure: Callable[[FastAPI, Platform], None] | None = None,
    unchecked_bodies: Sequence[str] = (),
) -> FastAPI:
    """``events``: what the service publishes and consumes (its ``events.py``); the app is not
    built if its subscriptions differ from it. ``unchecked_bodies``: path prefixes whose request
    bodies the input guard leaves to the route (it checks them itself, e.g. to quarantine one
    bad entry instead of refusing all)."""
    configure_logging(settings.service_name, settings.log_level)
    app = FastAPI(
        title=title,
        version="0.1.0",
        lifespan=_lifespan(on_startup, on_shutdown),
        description=f"Akson {settings.service_name} service",
        license_info={"name": "Apache-2.0"},
        # FHIR's handling=strict: a parameter a /fhir/ route does not know is a 400
        dependencies=[Depends(strict_parameters)],
    )
    platform = _platform(app, settings, events)
    if settings.jwks_url or settings.jwks_file:
        app.state.token_verifier = _token_verifier(settings, platform.http)
    # kept even where no token is verified (development without keys): one set of topics
    app.state.denylist = Denylist(platform.database, platform.subscriptions)
    _install_middleware(app, settings, unchecked_bodies)
    _install_health(app, platform)
    if configure is not None:
        configure(app, platform)
    events.subscribed(platform.subscriptions.topics)
    for router in routers:
        app.include_router(router)
    declare_error_responses(app, routers)
    return app


def _lifespan(
    on_startup: Startup | None, on_shutdown: Startup | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start what ``_platform`` built, in order, and stop it in reverse."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform: Platform = app.state.platform
        enforcement: EnforcementLog = app.state.enforcement
        await platform.pep.start()
        await platform.database.bootstrap()
        if on_startup is not None:
            await on_startup(platform)
        for worker in platform.workers:
            worker.start()
        platform.outbox.start()
        platform.subscriptions.start()
        enforcement.start()
        try:
            yield
        finally:
            for worker in reversed(platform.workers):
                await worker.stop()
            if on_shutdown is not None:
                await on_shutdown(platform)
            await enforcement.stop()
            await platform.subscriptions.stop()
            await platform.outbox.stop()
            await platform.pep.close()
            await platform.http.aclose()
            await platform.database.close()

    return lifespan


def _platform(app: FastAPI, settings: ServiceSettings, events: ServiceEvents) -> Platform:
    """The database, the sidecar client, publishing (through the outbox), subscriptions and
    the policy enforcement point (whose decisions the enforcement log records)."""
    database = Database(
        settings.mongo_url.get_secret_value(),
        settings.mongo_database,
        serialise_writes=settings.mongo_serialise_writes,
        max_pool_size=settings.mongo_max_pool_size,
    )
    http = httpx.AsyncClient(timeout=5.0)
    publisher = EventPublisher(
        http,
        settings.dapr_http_endpoint,
        settings.pubsub_name,
        settings.dapr_api_token.get_secret_value(),
        settings.partition_key_secret.get_secret_value(),
    )
    outbox = Outbox(database, publisher, settings.outbox_sweep_seconds, events)
    enforcement = EnforcementLog(outbox, settings.service_name)
    platform = Platform(
        settings=settings,
        database=database,
        http=http,
        publisher=publisher,
        outbox=outbox,
        subscriptions=Subscriptions(
            app, database, settings.pubsub_name, settings.app_api_token.get_secret_value()
        ),
        pep=PolicyEnforcementPoint(
            settings.opa_url,
            settings.opa_timeout_seconds,
            on_decision=enforcement.record,
            token=settings.opa_token.get_secret_value(),
            max_in_flight=settings.opa_max_in_flight,
            queue_seconds=settings.opa_queue_seconds,
        ),
    )
    app.state.platform = platform
    app.state.pep = platform.pep
    app.state.enforcement = enforcement
    return platform


def _token_verifier(settings: ServiceSettings, http: httpx.AsyncClient) -> TokenVerifier:
    return TokenVerifier(
        JwksSource(
            url=settings.jwks_url,
            file=settings.jwks_file,
            client=http,
            max_age_seconds=settings.jwks_max_age_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds,
        ),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        leeway_seconds=settings.jwt_leeway_seconds,
        fhir_audience=settings.fhir_gateway_audience,
    )


def _install_middleware(
    app: FastAPI, settings: ServiceSettings, unchecked_bodies: Sequence[str]
) -> None:
    install_problem_handlers(app)
    # errors under /fhir/ as OperationOutcome, in every service with a FHIR API
    install_fhir_outcomes(app)
    # the FHIR RESTful API's common parts (_format, POST _search, _summary, If-None-Match ...),
    # inside the guard: it sees what the guard let through
    app.add_middleware(FhirRest)
    # before routing, inside the request context (its refusals carry the request id)
    app.add_middleware(InputGuard, unchecked_bodies=(EVENT_ROUTES, *unchecked_bodies))
    app.add_middleware(RequestContextMiddleware)
    configure_tracing(app, settings.service_name, settings.otlp_endpoint)


def _install_health(app: FastAPI, platform: Platform) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"], summary="Readiness: database, sidecar and OPA")
    async def readyz() -> JSONResponse:
        sidecar = f"{platform.settings.dapr_http_endpoint}/v1.0/healthz/outbound"
        checks = {
            "database": await platform.database.ping(),
            "sidecar": await _answers(platform.http, sidecar),
            "opa": await platform.pep.healthy(),
        }
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )


async def _answers(http: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await http.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.is_success


T = TypeVar("T")


def state_dependency(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency returning what ``configure`` put on ``app.state.<name>``.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its thread
    pool, a hop that cost the authorised read ~1.3 ms of CPU (issue 15's profile)."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):
            raise TypeError(f"app.state.{name} is not a {kind.__name__}")
        return value

    dependency.__name__ = name
    return dependency


class ServedApp:
    """A service module's ``__getattr__`` giving ``app`` (uvicorn's ``<service>.main:app``),
    built from the environment on first use: importing ``main`` for its ``create_app`` (a
    test does) reads no environment.

    In ``main.py``: ``__getattr__ = ServedApp(lambda: create_app(settings_for(...)))``."""

    def __init__(self, build: Callable[[], FastAPI]) -> None:
        self._build = build
        self._app: FastAPI | None = None

    def __call__(self, name: str) -> FastAPI:
        if name != "app":
            raise AttributeError(name)
        if self._app is None:
            self._app = self._build()
        return self._app
