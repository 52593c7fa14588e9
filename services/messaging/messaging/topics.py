"""The subscription topics the platform offers (Subscriptions R5 Backport IG on R4): what an
app may be told about, one canonical URL each, the resource that triggers it and the one filter
every subscription must set, ``patient``.

The topics are served as R4B ``SubscriptionTopic`` resources (read and search) at the one FHIR
base; a Subscription names its topic by the canonical URL in ``Subscription.criteria``. Each
topic says which journal category its events carry: a notification is decided by the policy as
a read of that resource, for the subscriber, at delivery time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.subscriptiontopic import SubscriptionTopic

CANONICAL_BASE = "https://akson.no/fhir/SubscriptionTopic"
TOPIC_DATE = "2026-12-01"


@dataclass(frozen=True)
class Topic:
    """One topic: its id (and canonical URL), the resource type triggering it, the journal
    categories of its events, and the category a subscription to it is decided for."""

    id: str
    title: str
    description: str
    resource: str
    categories: frozenset[str]
    decided_as: str

    @property
    def url(self) -> str:
        return f"{CANONICAL_BASE}/{self.id}"


TOPICS: dict[str, Topic] = {
    topic.url: topic
    for topic in (
        Topic(
            "document-recorded",
            "Document recorded for a patient",
            "A clinical document (DocumentReference) was recorded, or a new version of it, in "
            "the patient's shared record.",
            "DocumentReference",
            frozenset(),  # any category: each notification is decided for its own
            "general",
        ),
        Topic(
            "result-available",
            "Result available",
            "A laboratory or radiology result (DiagnosticReport) for the patient is available.",
            "DiagnosticReport",
            frozenset({"lab_result", "radiology"}),
            "lab_result",
        ),
        Topic(
            "medication-list-changed",
            "Medication list changed",
            "The patient's shared medication list (MedicationStatement) changed.",
            "MedicationStatement",
            frozenset({"medication"}),
            "medication",
        ),
        Topic(
            "critical-information-changed",
            "Critical information changed",
            "The patient's critical information (AllergyIntolerance) changed.",
            "AllergyIntolerance",
            frozenset({"critical_info"}),
            "critical_info",
        ),
    )
}
BY_ID = {topic.id: topic for topic in TOPICS.values()}


def topic_resource(topic: Topic) -> dict[str, Any]:
    """The topic as an R4B SubscriptionTopic (validated)."""
    resource = {
        "resourceType": "SubscriptionTopic",
        "id": topic.id,
        "url": topic.url,
        "version": "1",
        "title": topic.title,
        "status": "active",
        "date": TOPIC_DATE,
        "publisher": "Akson",
        "description": topic.description,
        "resourceTrigger": [
            {
                "description": topic.description,
                "resource": f"http://hl7.org/fhir/StructureDefinition/{topic.resource}",
                "supportedInteraction": ["create", "update"],
            }
        ],
        "canFilterBy": [
            {
                "description": "The patient the resource is about (required).",
                "resource": topic.resource,
                "filterParameter": "patient",
            }
        ],
        "notificationShape": [{"resource": topic.resource}],
    }
    return SubscriptionTopic.model_validate(resource).model_dump(mode="json", exclude_none=True)
