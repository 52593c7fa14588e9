"""What the messaging service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    CARE_RELATION_CHANGED,
    CONSENT_DIRECTIVE_CHANGED,
    DECISIONS_ENFORCED,
    DOCUMENT_RECORDED,
    MESSAGE_DEAD_LETTERED,
    MESSAGE_DELIVERED,
    MESSAGE_QUEUED,
    MESSAGE_RECEIPTED,
    MESSAGE_RECEIVED,
    MESSAGE_RETRY_SCHEDULED,
    MESSAGE_SENT,
    ORGANISATION_CHANGED,
    PERSON_CHANGED,
    PRACTITIONER_CHANGED,
    RECORD_CHANGED,
    WELFARE_ALERT_RAISED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(
        MESSAGE_QUEUED,
        MESSAGE_RETRY_SCHEDULED,
        MESSAGE_SENT,
        MESSAGE_DELIVERED,
        MESSAGE_RECEIPTED,
        MESSAGE_DEAD_LETTERED,
        MESSAGE_RECEIVED,
        DECISIONS_ENFORCED,
    ),
    consumes=(
        # the journal's documents (the dispatch rules, Subscriptions) and changes (Subscriptions)
        DOCUMENT_RECORDED,
        RECORD_CHANGED,
        # welfare's alerts (to the responsible unit)
        WELFARE_ALERT_RAISED,
        # the read models: patients, care relations, directives; the directory
        PERSON_CHANGED,
        CARE_RELATION_CHANGED,
        CONSENT_DIRECTIVE_CHANGED,
        ORGANISATION_CHANGED,
        PRACTITIONER_CHANGED,
        # disabled accounts (tokens)
        ACCOUNT_DISABLED,
    ),
)
