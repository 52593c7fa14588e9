"""The identity service: the platform's security token service (STS)."""

from __future__ import annotations

from akson_common.settings import settings_for
from identity.app import create_app
from identity.settings import IdentitySettings

app = create_app(settings_for(IdentitySettings, "identity"))
