"""Wiring of the consent service: master data's read models, the directives, the routes."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.projections import PatientProjections
from akson_common.settings import ServiceSettings
from consent.api import router
from consent.service import ConsentAccess, ConsentDirectives


def configure(app: FastAPI, platform: Platform) -> None:
    app.state.projections = PatientProjections(
        platform.database,
        platform.subscriptions,
        cache_seconds=platform.settings.projection_cache_seconds,
    )
    app.state.directives = ConsentDirectives(platform)
    app.state.access = ConsentAccess(app.state.directives, platform.pep, app.state.projections)


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_service(settings, title="Akson consent", routers=[router], configure=configure)
