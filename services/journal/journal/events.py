"""What the journal publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    CARE_RELATION_CHANGED,
    CONSENT_DIRECTIVE_CHANGED,
    DECISIONS_ENFORCED,
    DOCUMENT_RECORDED,
    EMERGENCY_ACCESS,
    PERSON_CHANGED,
    RECORD_CHANGED,
    SUPPLIES_USED,
    VISIT_COMPLETED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(
        DOCUMENT_RECORDED,
        RECORD_CHANGED,
        VISIT_COMPLETED,
        SUPPLIES_USED,
        EMERGENCY_ACCESS,
        DECISIONS_ENFORCED,
    ),
    # patients with their care relations and consent directives (what its decisions need);
    # disabled accounts (tokens)
    consumes=(PERSON_CHANGED, CARE_RELATION_CHANGED, CONSENT_DIRECTIVE_CHANGED, ACCOUNT_DISABLED),
)
