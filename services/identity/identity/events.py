"""What the identity service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    DECISIONS_ENFORCED,
    ORGANISATION_CHANGED,
    PERSON_CHANGED,
    PRACTITIONER_CHANGED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(ACCOUNT_DISABLED, DECISIONS_ENFORCED),
    # master data's people and organisations: who may be issued which claims; disabled accounts
    # (its own, as every service's token verifier)
    consumes=(PRACTITIONER_CHANGED, PERSON_CHANGED, ORGANISATION_CHANGED, ACCOUNT_DISABLED),
)
