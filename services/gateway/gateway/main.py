"""The gateway: the platform's one FHIR base, routing each type to the service owning it."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.settings import settings_for
from gateway.api import router
from gateway.events import EVENTS
from gateway.owners import Invoker, Owners
from gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        invoker = Invoker(
            platform.http,
            settings.dapr_http_endpoint,
            settings.dapr_api_token.get_secret_value(),
            settings.invoke_timeout_seconds,
        )
        app.state.gateway_settings = settings
        app.state.owners = Owners(invoker, settings.owners, settings.capability_cache_seconds)

    return create_service(
        settings, title="Akson FHIR gateway", events=EVENTS, routers=[router], configure=configure
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(GatewaySettings, "gateway")))
