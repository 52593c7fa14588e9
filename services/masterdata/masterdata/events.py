"""What the master-data service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    CARE_RELATION_CHANGED,
    DECISIONS_ENFORCED,
    ORGANISATION_CHANGED,
    PERSON_CHANGED,
    PRACTITIONER_CHANGED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(
        PERSON_CHANGED,
        PRACTITIONER_CHANGED,
        ORGANISATION_CHANGED,
        CARE_RELATION_CHANGED,
        DECISIONS_ENFORCED,
    ),
    # disabled accounts (tokens)
    consumes=(ACCOUNT_DISABLED,),
)
