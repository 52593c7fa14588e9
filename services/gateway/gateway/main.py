"""The gateway: the platform's one FHIR base, routing each type to the service owning it."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.settings import settings_for
from gateway.api import router
from gateway.owners import Invoker, Owners
from gateway.settings import GatewaySettings

settings = settings_for(GatewaySettings, "gateway")


def configure(app: FastAPI, platform: Platform) -> None:
    invoker = Invoker(
        platform.http,
        settings.dapr_http_endpoint,
        settings.dapr_api_token.get_secret_value(),
        settings.invoke_timeout_seconds,
    )
    app.state.gateway_settings = settings
    app.state.owners = Owners(invoker, settings.owners, settings.capability_cache_seconds)


app = create_service(
    settings,
    title="Akson FHIR gateway",
    routers=[router],
    configure=configure,
)
