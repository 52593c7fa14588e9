"""What the audit service publishes and consumes (the topics: ``akson_common.events``)."""

from __future__ import annotations

from akson_common.events import (
    ACCOUNT_DISABLED,
    DECISION_GAP,
    DECISION_GAP_RESOLVED,
    DECISION_QUARANTINED,
    DECISIONS_ENFORCED,
    EMERGENCY_ACCESS,
    EMERGENCY_ACCESS_REVIEWED,
    ORGANISATION_CHANGED,
    PRACTITIONER_CHANGED,
    ServiceEvents,
)

EVENTS = ServiceEvents(
    publishes=(
        # the completeness alerts and the quarantine's
        DECISION_GAP,
        DECISION_GAP_RESOLVED,
        DECISION_QUARANTINED,
        EMERGENCY_ACCESS_REVIEWED,
        DECISIONS_ENFORCED,
    ),
    consumes=(
        # every service's enforced decisions, matched against OPA's decision log
        DECISIONS_ENFORCED,
        # emergency accesses, for review
        EMERGENCY_ACCESS,
        # the directory: names of practitioners and units in the auditors' views
        ORGANISATION_CHANGED,
        PRACTITIONER_CHANGED,
        # disabled accounts (tokens)
        ACCOUNT_DISABLED,
    ),
)
