"""The consent service: patients' blocks, reservations and sharing consents."""

from __future__ import annotations

from akson_common.settings import ServiceSettings, settings_for
from consent.app import create_app

app = create_app(settings_for(ServiceSettings, "consent"))
