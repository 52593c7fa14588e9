"""The integrations service: payroll and logistics exports, minimised by policy."""

from __future__ import annotations

from akson_common.settings import settings_for
from integrations.app import create_app
from integrations.settings import IntegrationsSettings

app = create_app(settings_for(IntegrationsSettings, "integrations"))
