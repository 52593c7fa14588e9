"""What the consent service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    CARE_RELATION_CHANGED,
    CONSENT_DIRECTIVE_CHANGED,
    DECISIONS_ENFORCED,
    PERSON_CHANGED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(CONSENT_DIRECTIVE_CHANGED, DECISIONS_ENFORCED),
    # master data's patients and care relations (the read model), disabled accounts (tokens)
    consumes=(PERSON_CHANGED, CARE_RELATION_CHANGED, ACCOUNT_DISABLED),
)
