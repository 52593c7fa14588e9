"""The master-data service: persons, practitioners, organisations and care relations."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.settings import ServiceSettings, settings_for
from masterdata.access import MasterDataAccess
from masterdata.api import router
from masterdata.service import MasterData


def configure(app: FastAPI, platform: Platform) -> None:
    app.state.masterdata = MasterData(platform)
    app.state.masterdata_access = MasterDataAccess(app.state.masterdata, platform.pep)


app = create_service(
    settings_for(ServiceSettings, "masterdata"),
    title="Akson master data",
    routers=[router],
    configure=configure,
)
