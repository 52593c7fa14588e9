"""The identity service: the platform's security token service (STS).

Wiring: store, keys, token service, subscriptions, routes."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.events import ORGANISATION_CHANGED, PERSON_CHANGED, PRACTITIONER_CHANGED
from akson_common.settings import settings_for
from identity.api import apps_router, install_oauth_errors, router
from identity.apps import AppRegistry
from identity.events import EVENTS
from identity.keys import SigningKeys
from identity.models import ClientRegistration
from identity.service import TokenService
from identity.settings import IdentitySettings
from identity.smart import AppLaunch
from identity.store import IdentityStore


def create_app(settings: IdentitySettings) -> FastAPI:
    built: dict[str, TokenService] = {}

    def configure(app: FastAPI, platform: Platform) -> None:
        store = IdentityStore(platform.database, platform.outbox)
        keys = SigningKeys(platform.database, settings.token_lifetime_seconds, settings.kek())
        service = TokenService(settings, store, keys, platform.http)
        platform.subscriptions.on(PRACTITIONER_CHANGED)(service.on_practitioner_changed)
        platform.subscriptions.on(PERSON_CHANGED, batch=service.on_persons_changed)(
            service.on_person_changed
        )
        platform.subscriptions.on(ORGANISATION_CHANGED)(service.on_organisation_changed)
        app.state.signing_keys = keys
        app.state.token_service = built["service"] = service
        app.state.identity_store = store
        app.state.app_registry = AppRegistry(store, platform.pep)
        app.state.app_launch = AppLaunch(service)
        install_oauth_errors(app)

    async def on_startup(platform: Platform) -> None:
        service = built["service"]
        await service.keys.ensure_one()
        await service.keys.prune()
        if settings.clients_file:
            for entry in json.loads(Path(settings.clients_file).read_text()):
                await service.store.clients.upsert(ClientRegistration.model_validate(entry))

    return create_service(
        settings,
        title="Akson identity",
        events=EVENTS,
        routers=[router, apps_router],
        configure=configure,
        on_startup=on_startup,
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(IdentitySettings, "identity")))
