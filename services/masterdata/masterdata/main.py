"""The master-data service: persons, practitioners, organisations and care relations."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.settings import ServiceSettings, settings_for
from masterdata.access import MasterDataAccess
from masterdata.api import router
from masterdata.events import EVENTS
from masterdata.service import MasterData


def configure(app: FastAPI, platform: Platform) -> None:
    app.state.masterdata = MasterData(platform)
    app.state.masterdata_access = MasterDataAccess(app.state.masterdata, platform.pep)


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_service(
        settings, title="Akson master data", events=EVENTS, routers=[router], configure=configure
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(ServiceSettings, "masterdata")))
