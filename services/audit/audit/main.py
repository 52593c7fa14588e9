"""The audit service: OPA's decision log, tamper-evident, for auditors and citizens."""

from __future__ import annotations

from akson_common.app import create_service
from akson_common.settings import settings_for
from audit.intake import AuditSettings, router

app = create_service(settings_for(AuditSettings, "audit"), title="Akson audit", routers=[router])
