"""What the welfare service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    CARE_RELATION_CHANGED,
    CONSENT_DIRECTIVE_CHANGED,
    DECISIONS_ENFORCED,
    PERSON_CHANGED,
    WELFARE_ALERT_RAISED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(WELFARE_ALERT_RAISED, DECISIONS_ENFORCED),
    # patients, care relations and consent directives (the device consents among them);
    # disabled accounts (tokens)
    consumes=(PERSON_CHANGED, CARE_RELATION_CHANGED, CONSENT_DIRECTIVE_CHANGED, ACCOUNT_DISABLED),
)
