"""What the integrations service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    DECISIONS_ENFORCED,
    EXPORT_EXPORTED,
    EXPORT_REFUSED,
    SUPPLIES_USED,
    VISIT_COMPLETED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(EXPORT_EXPORTED, EXPORT_REFUSED, DECISIONS_ENFORCED),
    # the journal's visits (payroll) and supplies (logistics); disabled accounts (tokens)
    consumes=(VISIT_COMPLETED, SUPPLIES_USED, ACCOUNT_DISABLED),
)
