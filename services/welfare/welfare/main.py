"""The welfare service: welfare-technology devices and their messages into the shared record."""

from __future__ import annotations

from akson_common.settings import settings_for
from welfare.app import create_app
from welfare.settings import WelfareSettings

app = create_app(settings_for(WelfareSettings, "welfare"))
